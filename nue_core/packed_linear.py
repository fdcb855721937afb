"""The decoder's linear layers with oneDNN-packed weights, for decoding on the CPU.

Why: a decoding step multiplies a few rows (one per running hypothesis) by every weight matrix.
With the plain (out, in) layout, the CPU's general matrix product handles such thin products
badly: measured on a 2-core AVX2 machine (2816 -> 11264, float32), 1 row took 10.4 ms, 8 rows
33.9 ms and 64 rows 62.7 ms, so a batch of 8 barely beat 8 single steps. With the weight reordered
once into oneDNN's blocked layout (what torch's own compiled CPU graphs use) the same products
took 7.1, 10.6 and 31.2 ms: batching then costs little more than one row, as a memory-bound step
should. ``plan_precision`` measures this on the machine at hand and packs only where it pays.

Packing is an inference transform, like ``nue_core.quantize``: the packed weight replaces the
layer's parameters (the model cannot be trained or saved afterwards; reload it for that), values
are the same up to float rounding (a different summation order).

Shape legend: n = any leading dimensions, i = in features, o = out features.
"""

from __future__ import annotations

import functools
import time

import torch
from torch import nn

# The row count the packed layout is tuned for (any count works; measured: 8 and 64 do alike).
BATCH_HINT = 8


def packing_available() -> bool:
    """Whether this torch build has oneDNN and its packed-linear operators."""
    ops = getattr(torch.ops, "mkldnn", None)
    return (torch.backends.mkldnn.is_available() and ops is not None
            and hasattr(ops, "_reorder_linear_weight") and hasattr(ops, "_linear_pointwise"))


class PackedLinear(nn.Module):
    """``nn.Linear`` for inference on the CPU with its weight in oneDNN's packed layout.

    Args:
        linear: the float32 layer to replace (its weight is copied into the packed layout).
        batch_hint: the row count the layout is tuned for.
    """

    def __init__(self, linear: nn.Linear, batch_hint: int = BATCH_HINT) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        weight = linear.weight.detach()
        # A plain attribute, not a parameter: oneDNN's opaque tensor has no storage to save or train.
        self.packed = torch.ops.mkldnn._reorder_linear_weight(weight.contiguous(), batch_hint)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (n, i) -> (n, o), as ``nn.Linear`` computes it."""
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, packed=oneDNN"


def can_pack(layer: nn.Module) -> bool:
    """A float32 ``nn.Linear`` on the CPU (what the packed operator takes)."""
    return (type(layer) is nn.Linear and layer.weight.device.type == "cpu"
            and layer.weight.dtype == torch.float32)


def pack_linears(module: nn.Module, batch_hint: int = BATCH_HINT) -> int:
    """Replace every packable linear layer under ``module`` by a PackedLinear, in place.

    Returns:
        how many layers were replaced.
    """
    # Names first, layers one at a time: holding every old layer while packing would keep all the
    # plain weights alive beside the packed ones (twice the decoder's memory: 29 GB at paper size).
    targets = [(parent_name, name) for parent_name, parent in module.named_modules()
               for name, child in parent.named_children() if can_pack(child)]
    for parent_name, name in targets:
        parent = module.get_submodule(parent_name)
        setattr(parent, name, PackedLinear(getattr(parent, name), batch_hint))
    return len(targets)


def is_packed(module: nn.Module) -> bool:
    return any(isinstance(m, PackedLinear) for m in module.modules())


@functools.lru_cache(maxsize=None)
def measure_packed_speedup(rows: int = BATCH_HINT, features: int = 1024, budget_s: float = 0.1) -> float:
    """plain time / packed time of a (rows, features) x (features, 4 * features) float32 product
    (cached per process); 0 when packing is not available."""
    if not packing_available():
        return 0.0
    layer = nn.Linear(features, 4 * features)
    packed = PackedLinear(layer)
    x = torch.randn(rows, features)
    times = []
    with torch.inference_mode():
        for fn in (layer, packed):
            fn(x)  # warm-up
            reps, start = 0, time.perf_counter()
            while (elapsed := time.perf_counter() - start) < budget_s / 2 or reps == 0:
                fn(x)
                reps += 1
            times.append(elapsed / reps)
    return times[0] / times[1]
