"""Tests of the Q-Former bridge: window and global lengths, masking, padding invariance, options."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError

import nue_bridges.plugin
from nue_bridges.qformer import QFormerBridge, QFormerOptions
from nue_core.plugins import load_plugins
from nue_core.registry import BuildContext
from nue_core.testing import check_component

IN, OUT = 12, 8
SMALL = dict(num_layers=2, num_heads=2, hidden_dim=16)


def padded_batch(lengths: list[int], extra: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random (b, max + extra, IN) frames with garbage (not zeros) in the padding."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(len(lengths), max(lengths) + extra, IN, generator=g), torch.tensor(lengths)


def assert_padding_invariant(bridge: torch.nn.Module, hidden: torch.Tensor, lengths: torch.Tensor) -> None:
    """Each item's valid outputs match the item run alone, unpadded; padding outputs are zero."""
    bridge.eval()
    with torch.no_grad():
        batched = bridge(hidden, lengths)
        assert not torch.isnan(batched.embeds).any()
        for i, length in enumerate(lengths.tolist()):
            alone = bridge(hidden[i : i + 1, :length], lengths[i : i + 1])
            n = int(alone.lengths[0])
            assert int(batched.lengths[i]) == n
            torch.testing.assert_close(batched.embeds[i, :n], alone.embeds[0, :n], atol=1e-5, rtol=1e-5)
            assert torch.all(batched.embeds[i, n:] == 0)


def test_window_length_follows_audio() -> None:
    bridge = QFormerBridge(IN, OUT, **SMALL)  # window mode: 17 frames, 1 query each
    hidden, lengths = padded_batch([34, 35, 17, 1, 0])
    out = bridge(hidden, lengths)
    assert out.lengths.tolist() == [2, 3, 1, 1, 0]
    assert out.embeds.shape == (5, 3, OUT)
    assert torch.equal(bridge.output_lengths(lengths), out.lengths)
    assert torch.all(out.embeds[4] == 0) and torch.all(out.embeds[0, 2:] == 0)


@pytest.mark.parametrize("frames, stride, queries", [(17, None, 1), (8, 4, 2), (5, 5, 3)])
def test_window_length_formula(frames: int, stride: int | None, queries: int) -> None:
    bridge = QFormerBridge(IN, OUT, window_frames=frames, window_stride=stride, num_queries=queries, **SMALL)
    lengths = torch.tensor([1, 4, 5, 16, 17, 40, 0])
    out = bridge(*padded_batch(lengths.tolist()))
    step = stride or frames
    assert out.lengths.tolist() == [math.ceil(t / step) * queries for t in lengths.tolist()]


def test_global_length_is_constant() -> None:
    bridge = QFormerBridge(IN, OUT, mode="global", **SMALL)
    assert bridge.num_queries == 32
    hidden, lengths = padded_batch([3, 60, 1, 0])
    out = bridge(hidden, lengths)
    assert out.lengths.tolist() == [32, 32, 32, 0]  # an item without frames gets no vectors
    assert out.embeds.shape == (4, 32, OUT)
    assert not torch.isnan(out.embeds).any() and torch.all(out.embeds[3] == 0)
    assert torch.equal(bridge.output_lengths(lengths), out.lengths)


@pytest.mark.parametrize(
    "options",
    [dict(mode="window"), dict(mode="window", window_frames=6, window_stride=4, num_queries=2),
     dict(mode="global", num_queries=4)],
)
def test_padding_invariance(options: dict) -> None:
    torch.manual_seed(0)
    bridge = QFormerBridge(IN, OUT, **SMALL, **options)
    # 20 frames: the second window holds 3 valid frames and, in the batch, padding keys.
    hidden, lengths = padded_batch([20, 51, 1, 0, 34])
    assert_padding_invariant(bridge, hidden, lengths)


def test_no_frames_at_all() -> None:
    for mode in ("window", "global"):
        bridge = QFormerBridge(IN, OUT, mode=mode, **SMALL)  # type: ignore[arg-type]
        for t in (0, 4):
            out = bridge(torch.randn(2, t, IN), torch.tensor([0, 0]))
            assert out.embeds.shape == (2, 0, OUT) and out.lengths.tolist() == [0, 0]


def test_gradients_reach_queries_and_projections() -> None:
    bridge = QFormerBridge(IN, OUT, **SMALL)
    hidden, lengths = padded_batch([20, 9])
    hidden.requires_grad_(True)
    bridge(hidden, lengths).embeds.sum().backward()
    assert bridge.queries.grad is not None and bridge.queries.grad.abs().sum() > 0
    assert bridge.frame_proj.weight.grad is not None
    assert torch.all(hidden.grad[1, 9:] == 0)  # padding frames do not influence the output


def test_seeded_value_is_stable() -> None:
    torch.manual_seed(0)
    bridge = QFormerBridge(IN, OUT, **SMALL).eval()
    out = bridge(torch.ones(1, 17, IN), torch.tensor([17])).embeds
    assert out.shape == (1, 1, OUT) and torch.isfinite(out).all()


def test_options_defaults_and_errors() -> None:
    options = QFormerOptions()
    assert (options.mode, options.num_layers, options.num_heads, options.hidden_dim) == ("window", 2, 4, 256)
    assert (options.window_frames, options.window_stride, options.num_queries) == (17, None, None)
    with pytest.raises(ValidationError, match="num_querys"):
        QFormerOptions.model_validate({"num_querys": 4})
    with pytest.raises(ValidationError, match="divisible"):
        QFormerOptions(hidden_dim=30, num_heads=4)
    with pytest.raises(ValidationError, match="skip frames"):
        QFormerOptions(window_frames=4, window_stride=8)


def test_from_options_export_and_groups() -> None:
    ctx = BuildContext(in_dim=IN, out_dim=OUT)
    bridge = QFormerBridge.from_options(QFormerOptions(mode="global", num_queries=3, hidden_dim=16), ctx)
    assert (bridge.in_dim, bridge.out_dim, bridge.ctc_blank_id) == (IN, OUT, None)
    exported = bridge.export_options(None)  # type: ignore[arg-type]
    rebuilt = QFormerBridge.from_options(QFormerOptions.model_validate(exported), ctx)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {
        k: v.shape for k, v in bridge.state_dict().items()
    }
    names = [n for n, _ in bridge.named_parameters()]
    for prefixes in bridge.freeze_groups.values():
        assert all(any(n.startswith(p) for n in names) for p in prefixes)
    modules = {n.rsplit(".", 1)[-1] for n, _ in bridge.named_modules()}
    assert set(bridge.lora_targets) <= modules


@pytest.mark.parametrize("mode", ["window", "global"])
def test_conformance(mode: str) -> None:
    plugins = load_plugins([("nue_bridges", nue_bridges.plugin)], registry_files=[])
    check_component("bridge", "qformer", {"mode": mode, "window_frames": 5, **SMALL}, plugin_set=plugins)
