"""Every first-party component passes the conformance kit, through the installed entry points.

The kit also runs each component inside a SpeechLM with its toy parts: a training step, then
SpeechLM.generate greedily and with beams (the decoders' KV cache and reorder_cache included),
batched equal to one by one. Configs stay tiny so this runs in seconds.
"""

from nue_core.testing import Example, check_plugin
from tests.conftest import TINY_BRIDGES, TINY_DECODER_CONFIGS, TINY_ENCODER_CONFIG

# SpecAugment's mask embedding is only used in training mode; the kit's part checks run in eval mode.
_SPEC_AUGMENT = ("model.masked_spec_embed",)
_TINY_FBANK = {"hidden_size": 16, "num_layers": 1, "num_heads": 2, "ffn_size": 32, "n_mels": 20, "conv_channels": 4}


def test_nue_hf_conforms():
    examples = {
        "encoder:hubert": Example(options={"config": TINY_ENCODER_CONFIG}, ignore=_SPEC_AUGMENT),
        "encoder:wav2vec2": Example(
            options={"config": {**TINY_ENCODER_CONFIG, "feat_extract_norm": "layer"}, "layer": "weighted"},
            ignore=_SPEC_AUGMENT,
        ),
        **{f"decoder:{name}": {"config": cfg, "tokenizer": "byte"} for name, cfg in TINY_DECODER_CONFIGS.items()},
    }
    check_plugin("nue_hf", examples)


def test_nue_bridges_conforms():
    examples = {
        "bridge:conv": TINY_BRIDGES["conv+ctc"],
        "bridge:qformer": TINY_BRIDGES["qformer-window"],
        "bridge:ctc-compress": {**TINY_BRIDGES["ctc-compress"], "merge": "weighted"},
    }
    check_plugin("nue_bridges", examples)


def test_nue_fbank_conforms():
    check_plugin("nue_fbank", {"encoder:fbank-transformer": _TINY_FBANK})
