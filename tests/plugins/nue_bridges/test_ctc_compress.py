"""Tests of the CTC-compress bridge: run merging (hand-built and property-based), gradients, options."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

import nue_bridges.plugin
from nue_bridges.ctc_compress import CTCCompressBridge, CTCCompressOptions, merge_runs
from nue_core.errors import ConfigError
from nue_core.plugins import load_plugins
from nue_core.registry import BuildContext
from nue_core.testing import check_component

A, B, BLANK = 0, 1, 3  # vocab V = 3 tokens, blank = V
LABELS = [A, A, BLANK, B, B, B, A]


def labelling_bridge(merge: str = "mean", blank: str = "drop") -> CTCCompressBridge:
    """A bridge whose frames are gelu(input) and whose CTC label is the argmax of the input.

    One 1x1 identity conv, an identity projection and an identity (x10) CTC head over 4 = V + 1
    dimensions, so a frame's label is chosen by which input dimension is hot.
    """
    bridge = CTCCompressBridge(4, 4, 3, kernel_sizes=[1], strides=[1], merge=merge, blank=blank)  # type: ignore[arg-type]
    with torch.no_grad():
        bridge.convs[0].weight.copy_(torch.eye(4)[:, :, None])
        bridge.convs[0].bias.zero_()
        bridge.proj.weight.copy_(torch.eye(4))
        bridge.proj.bias.zero_()
        bridge.ctc_head.weight.copy_(torch.eye(4) * 10)
        bridge.ctc_head.bias.zero_()
    return bridge.eval()


def inputs_for(labels: list[int], seed: int = 0) -> torch.Tensor:
    """(1, t, 4) positive inputs whose argmax dimension is each label."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(len(labels), 4, generator=g) * 0.5 + F.one_hot(torch.tensor(labels), 4) * 2.0
    return x[None]


def test_hand_built_runs_drop_blank() -> None:
    x = inputs_for(LABELS)
    out = labelling_bridge()(x, torch.tensor([7]))
    f = F.gelu(x[0])
    expected = torch.stack([f[0:2].mean(0), f[3:6].mean(0), f[6]])
    assert out.lengths.tolist() == [3]
    torch.testing.assert_close(out.embeds[0], expected)
    assert out.ctc_logits.shape == (1, 7, 4) and out.ctc_lengths.tolist() == [7]
    assert out.ctc_logits[0].argmax(-1).tolist() == LABELS


def test_hand_built_runs_keep_blank() -> None:
    x = inputs_for(LABELS)
    out = labelling_bridge(blank="merge")(x, torch.tensor([7]))
    f = F.gelu(x[0])
    expected = torch.stack([f[0:2].mean(0), f[2], f[3:6].mean(0), f[6]])
    assert out.lengths.tolist() == [4]
    torch.testing.assert_close(out.embeds[0], expected)


def test_weighted_merge_uses_max_probability() -> None:
    x = inputs_for(LABELS)
    out = labelling_bridge(merge="weighted")(x, torch.tensor([7]))
    f = F.gelu(x[0])
    w = (f * 10).softmax(-1).amax(-1)

    def avg(s: slice) -> torch.Tensor:
        return (f[s] * w[s, None]).sum(0) / w[s].sum()

    torch.testing.assert_close(out.embeds[0], torch.stack([avg(slice(0, 2)), avg(slice(3, 6)), f[6]]))


def test_blank_separates_repeated_labels_and_all_blank_falls_back() -> None:
    bridge = labelling_bridge()
    repeated = inputs_for([A, BLANK, A])
    assert bridge(repeated, torch.tensor([3])).lengths.tolist() == [2]
    silent = inputs_for([BLANK] * 5)
    out = bridge(silent, torch.tensor([5]))
    assert out.lengths.tolist() == [1]  # the LLM still gets one speech vector
    torch.testing.assert_close(out.embeds[0, 0], F.gelu(silent[0]).mean(0))


def test_batch_with_padding_matches_items_alone() -> None:
    bridge = labelling_bridge()
    items = [LABELS, [B, B, BLANK], [BLANK, BLANK], []]
    hidden = torch.randn(len(items), 9, 4) * 5  # garbage in the padding
    for i, labels in enumerate(items):
        if labels:
            hidden[i, : len(labels)] = inputs_for(labels, seed=i)[0]
    lengths = torch.tensor([len(x) for x in items])
    out = bridge(hidden, lengths)
    assert out.lengths.tolist() == [3, 1, 1, 0]
    assert out.embeds.shape == (4, 3, 4)
    for i, length in enumerate(lengths.tolist()):
        alone = bridge(hidden[i : i + 1, :length], lengths[i : i + 1])
        n = int(alone.lengths[0])
        torch.testing.assert_close(out.embeds[i, :n], alone.embeds[0, :n], atol=1e-5, rtol=1e-5)
        assert torch.all(out.embeds[i, n:] == 0)
        torch.testing.assert_close(out.ctc_logits[i, :length], alone.ctc_logits[0, :length])


def test_default_front_lengths_and_gradient_to_convs() -> None:
    torch.manual_seed(0)
    bridge = CTCCompressBridge(12, 8, 5)
    assert list(bridge.state_dict()) == [
        "convs.0.weight", "convs.0.bias", "convs.1.weight", "convs.1.bias",
        "proj.weight", "proj.bias", "ctc_head.weight", "ctc_head.bias",
    ]
    lengths = torch.tensor([50, 23, 3])
    out = bridge(torch.randn(3, 50, 12), lengths)
    assert out.ctc_lengths.tolist() == bridge.output_lengths(lengths).tolist() == [11, 4, 0]
    assert out.ctc_logits.shape == (3, 11, 6) and bridge.ctc_blank_id == 5
    assert torch.all(out.lengths <= out.ctc_lengths) and out.lengths.tolist()[2] == 0
    out.embeds.sum().backward()
    assert bridge.convs[0].weight.grad is not None and bridge.convs[0].weight.grad.abs().sum() > 0
    assert bridge.last_compression_ratio is not None and 0 < float(bridge.last_compression_ratio) <= 1


def test_short_batch_gives_empty_output() -> None:
    out = CTCCompressBridge(12, 8, 5)(torch.randn(2, 3, 12), torch.tensor([3, 1]))
    assert out.embeds.shape == (2, 0, 8) and out.ctc_logits.shape == (2, 0, 6)


def test_options_factory_and_errors() -> None:
    options = CTCCompressOptions()
    assert (options.kernel_sizes, options.strides, options.merge, options.blank) == ([4, 4], [2, 2], "mean", "drop")
    with pytest.raises(ValidationError, match="blanks"):
        CTCCompressOptions.model_validate({"blanks": "drop"})
    with pytest.raises(ValidationError):
        CTCCompressOptions(merge="max")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="ctc_vocab_size"):
        CTCCompressBridge.from_options(options, BuildContext(in_dim=12, out_dim=8))
    ctx = BuildContext(in_dim=12, out_dim=8, ctc_vocab_size=5)
    bridge = CTCCompressBridge.from_options(CTCCompressOptions(blank="merge", merge="weighted"), ctx)
    exported = bridge.export_options(None)  # type: ignore[arg-type]
    assert exported["blank"] == "merge" and exported["merge"] == "weighted"
    assert CTCCompressBridge.from_options(CTCCompressOptions.model_validate(exported), ctx).ctc_blank_id == 5
    names = [n for n, _ in bridge.named_parameters()]
    for prefixes in bridge.freeze_groups.values():
        assert all(any(n.startswith(p) for n in names) for p in prefixes)


def reference_runs(labels: list[int], blank: str) -> list[list[int]]:
    """Frame indices of each merged vector, by a plain Python loop (the spec)."""
    runs, start = [], 0
    for label, group in itertools.groupby(labels):
        size = len(list(group))
        if not (blank == "drop" and label == BLANK):
            runs.append(list(range(start, start + size)))
        start += size
    return runs or ([list(range(len(labels)))] if labels else [])


@settings(max_examples=60, deadline=None)
@given(
    items=st.lists(st.lists(st.sampled_from([A, B, 2, BLANK]), max_size=12), min_size=1, max_size=4),
    blank=st.sampled_from(["drop", "merge"]),
    merge=st.sampled_from(["mean", "weighted"]),
)
def test_merge_runs_matches_reference(items: list[list[int]], blank: str, merge: str) -> None:
    t = max(len(x) for x in items) + 2
    g = torch.Generator().manual_seed(len(items) * 100 + t)
    frames = torch.randn(len(items), t, 5, generator=g)
    labels = torch.full((len(items), t), BLANK)
    for i, x in enumerate(items):
        labels[i, : len(x)] = torch.tensor(x, dtype=torch.long)
    logits = F.one_hot(labels, 4).float() * 3 + torch.rand(len(items), t, 4, generator=g)
    lengths = torch.tensor([len(x) for x in items])
    embeds, counts = merge_runs(frames, logits, lengths, BLANK, merge, blank)  # type: ignore[arg-type]
    assert not torch.isnan(embeds).any()
    assert embeds.shape[1] == int(counts.max())
    weights = logits.softmax(-1).amax(-1) if merge == "weighted" else torch.ones_like(logits[..., 0])
    for i, x in enumerate(items):
        runs = reference_runs(x, blank)
        assert int(counts[i]) == len(runs) <= len(x)
        for j, run in enumerate(runs):
            w = weights[i, run]
            expected = (frames[i, run] * w[:, None]).sum(0) / w.sum()
            torch.testing.assert_close(embeds[i, j], expected, atol=1e-5, rtol=1e-5)
        assert torch.all(embeds[i, len(runs) :] == 0)


@pytest.mark.parametrize("options", [{}, {"merge": "weighted", "blank": "merge", "kernel_sizes": [3], "strides": [1]}])
def test_conformance(options: dict) -> None:
    plugins = load_plugins([("nue_bridges", nue_bridges.plugin)], registry_files=[])
    check_component("bridge", "ctc-compress", options, plugin_set=plugins)
