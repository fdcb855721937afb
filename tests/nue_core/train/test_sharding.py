"""Single-process parts of FSDP sharding: when the trainer shards, which blocks, the gradient norm.

The two-process runs are in test_fsdp.py."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from accelerate.utils import DistributedType

from nue_core.composer import compose
from nue_core.config import ModelConfig
from nue_core.errors import ConfigError
from nue_core.train import sharding
from tests.conftest import tiny_config


def _acc(kind: DistributedType = DistributedType.MULTI_CPU, processes: int = 2, fsdp2: bool = False) -> SimpleNamespace:
    return SimpleNamespace(distributed_type=kind, num_processes=processes, is_fsdp2=fsdp2)


def test_own_sharding_only_when_asked_on_several_processes() -> None:
    assert sharding.wants_own_sharding(True, "fp32", _acc())
    assert sharding.wants_own_sharding(True, "bf16", _acc(DistributedType.MULTI_GPU))
    assert not sharding.wants_own_sharding(False, "fp32", _acc())
    assert not sharding.wants_own_sharding(True, "fp32", _acc(DistributedType.NO, processes=1))
    # accelerate's own FSDP2 (GPUs) already shards: not twice
    assert not sharding.wants_own_sharding(True, "fp32", _acc(DistributedType.FSDP, fsdp2=True))


def test_fsdp1_and_fp16_are_refused_with_what_to_do() -> None:
    with pytest.raises(ConfigError, match="fsdp_version: 2"):
        sharding.wants_own_sharding(False, "fp32", _acc(DistributedType.FSDP, fsdp2=False))
    with pytest.raises(ConfigError, match="use bf16"):
        sharding.wants_own_sharding(True, "fp16", _acc(DistributedType.MULTI_GPU))


def test_blocks_are_the_transformer_layers_also_under_lora() -> None:
    config = tiny_config()
    config["decoder"]["lora"] = {"r": 4, "alpha": 8}
    model = compose(ModelConfig.from_dict(config))
    names = [type(b).__name__ for b in sharding.shard_blocks(model)]
    # not the feature extractor's conv layers (their parts are called directly) nor the pos conv
    assert names == ["HubertEncoderLayer"] * 2 + ["GPTNeoXLayer"] * 2
    assert not sharding.is_sharded(model)


def test_grad_norm_of_plain_tensors_is_torchs_clip() -> None:
    torch.manual_seed(0)
    a, b = torch.nn.Parameter(torch.randn(4, 3)), torch.nn.Parameter(torch.randn(5))
    a.grad, b.grad = torch.randn(4, 3) * 3, torch.randn(5) * 3
    ref_a, ref_b = [torch.nn.Parameter(p.detach().clone()) for p in (a, b)]
    ref_a.grad, ref_b.grad = a.grad.clone(), b.grad.clone()
    expected = torch.nn.utils.clip_grad_norm_([ref_a, ref_b], 1.0)
    assert torch.equal(sharding.grad_norm([a, b], 1.0), expected)
    assert torch.equal(a.grad, ref_a.grad) and torch.equal(b.grad, ref_b.grad)
    assert float(torch.linalg.vector_norm(torch.cat([a.grad.flatten(), b.grad]))) == pytest.approx(1.0, rel=1e-5)
