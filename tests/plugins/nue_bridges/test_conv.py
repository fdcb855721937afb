"""Tests of the conv bridge: released-checkpoint key names and maths, lengths, padding, options."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

import nue_bridges.plugin
from nue_bridges.conv import ConvBridge, ConvBridgeOptions
from nue_core.errors import ConfigError
from nue_core.plugins import load_plugins
from nue_core.registry import BuildContext
from nue_core.testing import check_component

IN, OUT, VOCAB = 12, 8, 7


def padded_batch(lengths: list[int], dim: int, extra: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random (b, max + extra, dim) frames with garbage (not zeros) in the padding."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(len(lengths), max(lengths) + extra, dim, generator=g), torch.tensor(lengths)


def assert_padding_invariant(bridge: torch.nn.Module, hidden: torch.Tensor, lengths: torch.Tensor) -> None:
    """Each item's valid outputs match the item run alone, unpadded; padding outputs are zero."""
    bridge.eval()
    with torch.no_grad():
        batched = bridge(hidden, lengths)
        assert batched.embeds.shape[1] == int(batched.lengths.max())
        for i, length in enumerate(lengths.tolist()):
            alone = bridge(hidden[i : i + 1, :length], lengths[i : i + 1])
            n = int(alone.lengths[0])
            assert int(batched.lengths[i]) == n
            torch.testing.assert_close(batched.embeds[i, :n], alone.embeds[0, :n], atol=1e-5, rtol=1e-5)
            assert torch.all(batched.embeds[i, n:] == 0)
            if alone.ctc_logits is not None:
                c = int(alone.ctc_lengths[0])
                torch.testing.assert_close(batched.ctc_logits[i, :c], alone.ctc_logits[0, :c], atol=1e-5, rtol=1e-5)
                assert torch.all(batched.ctc_logits[i, c:] == 0)


def nue_asr_length(t: int) -> int:
    """The NUE_ASR_CHECKPOINT.md formula for kernel [4, 4], stride [2, 2], no padding."""
    return max((max((t - 4) // 2 + 1, 0) - 4) // 2 + 1, 0) if t >= 4 else 0


def test_state_dict_keys_match_released_bridge() -> None:
    bridge = ConvBridge(IN, OUT)
    assert list(bridge.state_dict()) == [
        "convs.0.weight", "convs.0.bias", "convs.1.weight", "convs.1.bias", "proj.weight", "proj.bias",
    ]
    assert bridge.convs[0].weight.shape == (IN, IN, 4)
    assert bridge.proj.weight.shape == (OUT, IN)


def test_loaded_weights_reproduce_reference_computation() -> None:
    torch.manual_seed(0)
    weights = {
        "convs.0.weight": torch.randn(IN, IN, 4) * 0.2, "convs.0.bias": torch.randn(IN) * 0.1,
        "convs.1.weight": torch.randn(IN, IN, 4) * 0.2, "convs.1.bias": torch.randn(IN) * 0.1,
        "proj.weight": torch.randn(OUT, IN) * 0.2, "proj.bias": torch.randn(OUT) * 0.1,
    }
    bridge = ConvBridge(IN, OUT).eval()
    bridge.load_state_dict(weights, strict=True)
    hidden = torch.randn(1, 37, IN)
    # The reference: batch 1, no mask, conv -> gelu -> conv -> gelu -> linear.
    x = hidden.transpose(1, 2)
    for i in range(2):
        x = F.gelu(F.conv1d(x, weights[f"convs.{i}.weight"], weights[f"convs.{i}.bias"], stride=2))
    expected = F.linear(x.transpose(1, 2), weights["proj.weight"], weights["proj.bias"])
    out = bridge(hidden, torch.tensor([37]))
    assert out.embeds.shape == (1, nue_asr_length(37), OUT) == expected.shape
    torch.testing.assert_close(out.embeds, expected, atol=1e-6, rtol=1e-5)
    assert out.ctc_logits is None and bridge.ctc_blank_id is None


@pytest.mark.parametrize("t", [0, 1, 3, 4, 5, 9, 10, 11, 12, 50, 801])
def test_output_length_follows_released_formula(t: int) -> None:
    bridge = ConvBridge(IN, OUT)
    assert int(bridge.output_lengths(torch.tensor([t]))[0]) == nue_asr_length(t)


def test_lengths_in_a_batch_and_padding_zeros() -> None:
    bridge = ConvBridge(IN, OUT)
    hidden, lengths = padded_batch([50, 23, 10, 9], IN)
    out = bridge(hidden, lengths)
    assert out.lengths.tolist() == [nue_asr_length(t) for t in (50, 23, 10, 9)] == [11, 4, 1, 0]
    assert out.embeds.shape == (4, 11, OUT)
    assert torch.all(out.embeds[3] == 0) and torch.all(out.embeds[2, 1:] == 0)


def test_batch_shorter_than_receptive_field() -> None:
    bridge = ConvBridge(IN, OUT)
    out = bridge(torch.randn(2, 3, IN), torch.tensor([3, 0]))
    assert out.embeds.shape == (2, 0, OUT)
    assert out.lengths.tolist() == [0, 0]
    # An empty time axis too.
    assert bridge(torch.randn(2, 0, IN), torch.tensor([0, 0])).embeds.shape == (2, 0, OUT)


@pytest.mark.parametrize("padding", [0, 1, 2])
def test_padding_invariance(padding: int) -> None:
    torch.manual_seed(1)
    bridge = ConvBridge(IN, OUT, padding=padding, ctc_vocab_size=VOCAB)
    hidden, lengths = padded_batch([31, 7, 18, 2, 0], IN)
    assert_padding_invariant(bridge, hidden, lengths)


def test_ctc_head_outputs_vocab_plus_blank() -> None:
    bridge = ConvBridge(IN, OUT, ctc_vocab_size=VOCAB)
    out = bridge(*padded_batch([30, 12], IN))
    assert bridge.ctc_blank_id == VOCAB
    assert out.ctc_logits is not None and out.ctc_logits.shape == (2, 6, VOCAB + 1)
    assert torch.equal(out.ctc_lengths, out.lengths)


def test_from_options_and_export_roundtrip() -> None:
    ctx = BuildContext(in_dim=IN, out_dim=OUT, ctc_vocab_size=VOCAB)
    options = ConvBridgeOptions(kernel_sizes=[3, 3, 2], strides=[2, 2, 1], hidden_dim=10, ctc_head=True)
    bridge = ConvBridge.from_options(options, ctx)
    assert (bridge.in_dim, bridge.out_dim, bridge.ctc_blank_id) == (IN, OUT, VOCAB)
    exported = bridge.export_options(None)  # type: ignore[arg-type]
    rebuilt = ConvBridge.from_options(ConvBridgeOptions.model_validate(exported), ctx)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {
        k: v.shape for k, v in bridge.state_dict().items()
    }
    assert bridge(torch.randn(1, 20, IN), torch.tensor([20])).embeds.shape == (1, 3, OUT)


def test_ctc_head_without_vocab_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="ctc_vocab_size"):
        ConvBridge.from_options(ConvBridgeOptions(ctc_head=True), BuildContext(in_dim=IN, out_dim=OUT))


def test_freeze_groups_match_parameters() -> None:
    bridge = ConvBridge(IN, OUT, ctc_vocab_size=VOCAB)
    names = [n for n, _ in bridge.named_parameters()]
    for prefixes in bridge.freeze_groups.values():
        for prefix in prefixes:
            assert any(n.startswith(prefix) for n in names), prefix
    assert set(bridge.freeze_groups) == {"convs", "proj", "ctc_head"}


def test_unknown_and_inconsistent_options_are_rejected() -> None:
    with pytest.raises(ValidationError, match="kernal_sizes"):
        ConvBridgeOptions.model_validate({"kernal_sizes": [4]})
    with pytest.raises(ValidationError, match="same length"):
        ConvBridgeOptions(kernel_sizes=[4, 4], strides=[2])
    assert ConvBridgeOptions.model_fields["kernel_sizes"].description


def test_registered_through_the_plugin() -> None:
    registry = load_plugins([("nue_bridges", nue_bridges.plugin)], registry_files=[]).registry
    bridge = registry.get("bridge", "conv1d").build({"ctc_head": False}, BuildContext(in_dim=IN, out_dim=OUT), "bridge")
    assert isinstance(bridge, ConvBridge)
    with pytest.raises(ConfigError, match="kernal"):
        registry.get("bridge", "conv").build({"kernal": 3}, BuildContext(in_dim=IN, out_dim=OUT), "bridge")


@pytest.mark.parametrize("options", [{}, {"ctc_head": True, "padding": 1}])
def test_conformance(options: dict) -> None:
    plugins = load_plugins([("nue_bridges", nue_bridges.plugin)], registry_files=[])
    check_component("bridge", "conv", options, plugin_set=plugins)
