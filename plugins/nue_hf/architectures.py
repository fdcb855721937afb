"""Architecture configs of the Hugging Face checkpoints nue_hf knows, so a model is described offline.

The composer hands them to factories (``BuildContext.architectures``) to build a model on the meta
device without downloading anything (``nue compose --describe``, size checks). Fields are the
checkpoint's own ``config.json`` fields; what is left out takes the transformers default of its
``model_type``. Registered through the ``register_architectures`` hook (``nue_hf.plugin``).
"""

from __future__ import annotations

from typing import Any, Callable

# The large HuBERT / wav2vec2 layout (24 layers, 1024 wide, layer-norm extractor), shared by both.
_LARGE_SPEECH: dict[str, Any] = {
    "hidden_size": 1024,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "intermediate_size": 4096,
    "conv_bias": True,
    "feat_extract_norm": "layer",
    "do_stable_layer_norm": True,
}

ARCHITECTURES: dict[str, dict[str, Any]] = {
    # 94M params, 768 wide, 12 layers, group-norm extractor
    "rinna/japanese-hubert-base": {
        "model_type": "hubert",
        "conv_bias": False,
        "feat_extract_norm": "group",
    },
    # 94M, English LibriSpeech 960 h
    "facebook/hubert-base-ls960": {
        "model_type": "hubert",
        "conv_bias": False,
        "feat_extract_norm": "group",
    },
    # 316M, English, fine-tuned on LibriSpeech 960 h
    "facebook/hubert-large-ls960-ft": {
        "model_type": "hubert",
        **_LARGE_SPEECH,
    },
    # 94M, English LibriSpeech 960 h
    "facebook/wav2vec2-base": {
        "model_type": "wav2vec2",
        "conv_bias": False,
        "feat_extract_norm": "group",
    },
    # 300M, 128 languages, layer-norm extractor
    "facebook/wav2vec2-xls-r-300m": {
        "model_type": "wav2vec2",
        **_LARGE_SPEECH,
    },
    # 3.6B, Japanese, sentencepiece vocab 32000
    "rinna/japanese-gpt-neox-3.6b": {
        "model_type": "gpt_neox",
        "hidden_size": 2816,
        "num_hidden_layers": 36,
        "num_attention_heads": 22,
        "intermediate_size": 11264,
        "vocab_size": 32000,
        "rotary_pct": 1.0,
        "use_parallel_residual": False,
        "max_position_embeddings": 2048,
        "bos_token_id": 2,
        "eos_token_id": 3,
    },
    # 1.2B, English-centric, vocab 128256
    "meta-llama/Llama-3.2-1B": {
        "model_type": "llama",
        "hidden_size": 2048,
        "num_hidden_layers": 16,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "intermediate_size": 8192,
        "vocab_size": 128256,
        "max_position_embeddings": 131072,
        "rope_theta": 500000.0,
        "tie_word_embeddings": True,
        "bos_token_id": 128000,
        "eos_token_id": 128001,
    },
    # 0.5B, multilingual (29 languages), vocab 151936
    "Qwen/Qwen2.5-0.5B": {
        "model_type": "qwen2",
        "hidden_size": 896,
        "num_hidden_layers": 24,
        "num_attention_heads": 14,
        "num_key_value_heads": 2,
        "intermediate_size": 4864,
        "vocab_size": 151936,
        "max_position_embeddings": 32768,
        "rope_theta": 1000000.0,
        "tie_word_embeddings": True,
        "bos_token_id": 151643,
        "eos_token_id": 151643,
    },
}


def register_architectures(register: Callable[[str, dict[str, Any]], None]) -> None:
    """Hand every known checkpoint's architecture to the host's ``register(checkpoint_id, config)``."""
    for checkpoint, config in ARCHITECTURES.items():
        register(checkpoint, dict(config))  # a copy: the host may keep what it is given
