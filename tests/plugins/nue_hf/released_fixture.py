"""Build a tiny checkpoint folder in the released Nue-ASR layout (as NUE_ASR_CHECKPOINT.md documents)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, HubertConfig, HubertModel

from tests.plugins.nue_hf.test_tokenizers import make_sentencepiece_folder

ENCODER = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
               conv_dim=[32, 32, 32], conv_kernel=[10, 8, 8], conv_stride=[5, 8, 8],
               num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, conv_bias=False,
               feat_extract_norm="group")
LLM = dict(hidden_size=48, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96, vocab_size=60,
           rotary_pct=1.0, use_parallel_residual=False, bos_token_id=2, eos_token_id=3, max_position_embeddings=256)


def build_parts(seed: int = 0) -> tuple[HubertModel, GPTNeoXForCausalLM, dict[str, torch.Tensor]]:
    torch.manual_seed(seed)
    hubert = HubertModel(HubertConfig(**ENCODER)).eval()
    llm = GPTNeoXForCausalLM(GPTNeoXConfig(**LLM)).eval()
    with torch.no_grad():  # a sharper head so greedy outputs differ between clips
        llm.get_output_embeddings().weight.mul_(6.0)
    width = ENCODER["hidden_size"]
    bridge = {}
    for i, k in enumerate([4, 4]):
        bridge[f"bridge_convs.{i}.weight"] = torch.randn(width, width, k) / (width * k) ** 0.5
        bridge[f"bridge_convs.{i}.bias"] = torch.randn(width) * 0.1
    bridge["bridge_proj.weight"] = torch.randn(LLM["hidden_size"], width) / width ** 0.5
    bridge["bridge_proj.bias"] = torch.randn(LLM["hidden_size"]) * 0.1
    return hubert, llm, bridge


def released_state(hubert, llm, bridge, weight_norm_style: str = "parametrizations") -> dict[str, torch.Tensor]:  # type: ignore[no-untyped-def]
    state = {f"audio_encoder.{k}": v for k, v in hubert.state_dict().items()}
    for k, v in llm.state_dict().items():
        k = "embed_out.weight" if k == "lm_head.weight" else k  # transformers 4.x naming, as released
        state[f"llm.{k}"] = v
    state.update(bridge)
    if weight_norm_style == "g_v":
        for new, old in ((".parametrizations.weight.original0", ".weight_g"), (".parametrizations.weight.original1", ".weight_v")):
            state = {(k.replace(new, old) if k.endswith(new) else k): v for k, v in state.items()}
    return {k: v.detach().clone().contiguous() for k, v in state.items()}


def make_released_folder(folder: Path, fmt: str = "safetensors", weight_norm_style: str = "parametrizations", seed: int = 0) -> Path:
    """Write config.json, weights (fp16, as released) and tokenizer files into ``folder``."""
    hubert, llm, bridge = build_parts(seed)
    make_sentencepiece_folder(folder)
    config = {"model_type": "nue_asr", "audio_encoder_config": ENCODER, "llm_config": LLM,
              "bridge_conv_kernel_size": [4, 4], "bridge_conv_stride": [2, 2]}
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    state = {k: v.half() for k, v in released_state(hubert, llm, bridge, weight_norm_style).items()}
    if fmt == "safetensors":
        save_file(state, str(folder / "model.safetensors"))
    else:
        torch.save(state, folder / "pytorch_model.bin")
    return folder
