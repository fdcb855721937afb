"""One switch: every outermost transformers model inside a module is switched on, non-reentrant."""

from __future__ import annotations

from typing import Any

from torch import nn

from nue_core.grad_checkpointing import enable_gradient_checkpointing


class _FakeHF(nn.Module):
    supports_gradient_checkpointing = True

    def __init__(self, inner: nn.Module | None = None) -> None:
        super().__init__()
        self.inner = inner if inner is not None else nn.Linear(2, 2)
        self.calls: list[dict[str, Any]] = []

    def activation_checkpointing_enable(self, activation_checkpointing_kwargs: dict[str, Any] | None = None) -> None:
        self.calls.append(dict(activation_checkpointing_kwargs or {}))


def test_switches_outermost_models_only() -> None:
    nested, inner, other = _FakeHF(), _FakeHF(), _FakeHF()
    outer = _FakeHF(inner)
    model = nn.ModuleDict({"encoder": outer, "decoder": other, "bridge": nn.Linear(2, 2)})
    assert enable_gradient_checkpointing(model) == 2
    assert outer.calls == other.calls == [{"use_reentrant": False}]
    assert inner.calls == [] and nested.calls == []
    assert enable_gradient_checkpointing(inner) == 1  # a model itself counts


def test_real_transformers_model() -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=16, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2)
    model = LlamaForCausalLM(config)
    assert enable_gradient_checkpointing(nn.ModuleDict({"decoder": model})) == 1
    assert model.model.layers[0].gradient_checkpointing
