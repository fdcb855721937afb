"""Shared fixtures: tiny component configs, offline hub, seeded audio."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a model hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest
import torch

TINY_ENCODER_CONFIG = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "conv_dim": [32, 32, 32],
    "conv_kernel": [10, 8, 8],
    "conv_stride": [5, 8, 8],
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 2,
    "feat_extract_norm": "group",
}
TINY_DECODER_CONFIGS = {
    "gpt-neox": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
                 "intermediate_size": 64, "max_position_embeddings": 512},
    "llama": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
              "intermediate_size": 64, "max_position_embeddings": 512},
    "hf-causal-lm": {"model_type": "qwen2", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
                     "num_key_value_heads": 2, "intermediate_size": 64, "max_position_embeddings": 512},
}
TINY_BRIDGES = {
    "conv": {"kernel_sizes": [4, 4], "strides": [2, 2]},
    "conv+ctc": {"kernel_sizes": [4], "strides": [2], "ctc_head": True},
    "qformer-window": {"mode": "window", "num_queries": 1, "window_frames": 4, "hidden_dim": 32, "num_heads": 2, "num_layers": 1},
    "qformer-global": {"mode": "global", "num_queries": 6, "hidden_dim": 32, "num_heads": 2, "num_layers": 1},
    "ctc-compress": {"kernel_sizes": [3], "strides": [1]},
}


def tiny_config(encoder: str = "hubert", bridge: str = "conv", decoder: str = "gpt-neox", **extra) -> dict:
    """A whole tiny model config (random init, byte tokenizer, no files)."""
    bridge_name = bridge.split("+")[0].split("-window")[0].split("-global")[0]
    return {
        "encoder": {"name": encoder, "config": dict(TINY_ENCODER_CONFIG)},
        "bridge": {"name": bridge_name, **TINY_BRIDGES[bridge]},
        "decoder": {"name": decoder, "tokenizer": "byte", "config": dict(TINY_DECODER_CONFIGS[decoder])},
        "prompt": {"prefix": "<s>", "postfix": ""},
        **extra,
    }


def make_audio(seconds: list[float], sample_rate: int = 16000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded random 'speech' (b, s) and lengths (b,)."""
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([int(s * sample_rate) for s in seconds])
    wave = torch.randn(len(seconds), int(lengths.max()), generator=gen) * 0.1
    wave *= torch.arange(wave.shape[1])[None, :] < lengths[:, None]
    return wave, lengths


@pytest.fixture
def tiny():
    return tiny_config
