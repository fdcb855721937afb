"""Masked norms equal the plain norm of each item cut to its valid length."""

from __future__ import annotations

import torch
from torch import nn

from nue_core.masked_norm import masked_group_norm, normalize_waveforms


def test_masked_group_norm_matches_group_norm_of_each_cut_item() -> None:
    torch.manual_seed(0)
    norm = nn.GroupNorm(2, 4, affine=True)
    nn.init.normal_(norm.weight), nn.init.normal_(norm.bias)
    x, lengths = torch.randn(3, 4, 9), torch.tensor([9, 5, 0])
    y = masked_group_norm(x, lengths, norm)
    for i, n in enumerate(lengths.tolist()):
        if n:
            torch.testing.assert_close(y[i, :, :n], norm(x[i : i + 1, :, :n])[0])
        assert not y[i, :, n:].any()


def test_normalize_waveforms_matches_layer_norm_of_each_cut_item() -> None:
    torch.manual_seed(0)
    waves, lengths = torch.randn(2, 50) * 3 + 1, torch.tensor([50, 20])
    out = normalize_waveforms(waves, lengths, eps=1e-5)
    for i, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(out[i, :n], torch.nn.functional.layer_norm(waves[i, :n], (n,), eps=1e-5))
        assert not out[i, n:].any()
