"""nue_core.lengths against brute force: masks by comparison, conv lengths by running a real Conv1d."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nue_core.lengths import conv_output_lengths, conv_output_size, conv_stack_lengths, length_mask, max_length

_lengths = st.lists(st.integers(0, 40), min_size=0, max_size=6)


def _conv_frames(length: int, kernel: int, stride: int, padding: int) -> int:
    """Frames a real Conv1d gives for ``length`` inputs (0 for an empty input, or when it refuses)."""
    if length == 0 or length + 2 * padding < kernel:
        return 0
    conv = torch.nn.Conv1d(1, 1, kernel, stride, padding)
    return conv(torch.zeros(1, 1, length)).shape[-1]


@settings(max_examples=50, deadline=None)
@given(_lengths, st.integers(0, 45))
def test_length_mask_is_position_below_length(lengths: list[int], size: int) -> None:
    mask = length_mask(torch.tensor(lengths, dtype=torch.long), size)
    assert mask.shape == (len(lengths), size) and mask.dtype == torch.bool
    expected = [[j < n for j in range(size)] for n in lengths]
    assert mask.tolist() == expected


@settings(max_examples=60, deadline=None)
@given(_lengths, st.integers(1, 7), st.integers(1, 4), st.integers(0, 3))
def test_conv_output_lengths_match_conv1d(lengths: list[int], kernel: int, stride: int, padding: int) -> None:
    out = conv_output_lengths(torch.tensor(lengths, dtype=torch.int32), kernel, stride, padding)
    assert out.dtype == torch.int64 and out.shape == (len(lengths),)
    assert out.tolist() == [_conv_frames(n, kernel, stride, padding) for n in lengths]
    assert [conv_output_size(n, kernel, stride, padding) for n in lengths] == out.tolist()


@settings(max_examples=40, deadline=None)
@given(_lengths, st.lists(st.tuples(st.integers(1, 5), st.integers(1, 3)), min_size=1, max_size=3))
def test_conv_stack_lengths_chain_the_layers(lengths: list[int], layers: list[tuple[int, int]]) -> None:
    expected = []
    for n in lengths:
        for kernel, stride in layers:
            n = _conv_frames(n, kernel, stride, 0)
        expected.append(n)
    kernels, strides = zip(*layers)
    assert conv_stack_lengths(torch.tensor(lengths), kernels, strides).tolist() == expected


def test_max_length() -> None:
    assert max_length(torch.tensor([3, 7, 2])) == 7
    assert max_length(torch.zeros(0, dtype=torch.long)) == 0
