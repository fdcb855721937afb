"""Layer selection over an upstream's hidden states, in the style of s3prl's ``Featurizer``.

Shape legend: b = batch, t = frames, d = width, l = hidden states (layers + 1).
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch
from torch import nn

from nue_core.errors import ConfigError

Layer = int | Literal["last", "weighted"]


def state_index(layer: Layer, num_states: int) -> int | None:
    """The index into ``num_states`` hidden states an int/'last' layer picks (None for 'weighted').

    Raises:
        ConfigError: an int out of range, with the allowed range.
    """
    if layer == "weighted":
        return None
    if layer == "last":
        return num_states - 1
    if not -num_states <= layer < num_states:
        raise ConfigError(
            f"layer {layer} is out of range for an upstream with {num_states} hidden states: use "
            f"0..{num_states - 1} (0 = transformer input), -1..-{num_states} from the end, 'last' or 'weighted'"
        )
    return layer % num_states


class Featurizer(nn.Module):
    """One hidden state, or a learnable softmax-weighted sum of all (weights start uniform).

    Args:
        num_states: how many hidden states the upstream gives.
        layer: an index, 'last' or 'weighted'.
    """

    def __init__(self, num_states: int, layer: Layer) -> None:
        super().__init__()
        self.layer = layer
        self.index = state_index(layer, num_states)
        self.weights = nn.Parameter(torch.zeros(num_states)) if self.index is None else None

    def forward(self, states: Sequence[torch.Tensor]) -> torch.Tensor:
        """l states of (b, t, d) -> (b, t, d)."""
        if self.weights is None:
            return states[self.index]  # type: ignore[index]
        weights = torch.softmax(self.weights, dim=0).to(states[0].dtype)
        return torch.einsum("l,lbtd->btd", weights, torch.stack(list(states)))
