"""Int8 of the decoder's linear layers for CPU decoding (``--quantize int8``).

Decoding one token at a time reads every decoder weight per step: on a CPU the decoder's linear
layers are memory-bound, and int8 weights read 4x fewer bytes than float32. This uses torch's own
dynamic quantization (``torch.ao.quantization.quantize_dynamic``): each ``nn.Linear`` of the
decoder becomes a ``DynamicQuantizedLinear`` with int8 weights quantized per output channel once,
and activations quantized per call; the products run in fbgemm/oneDNN int8 kernels (AVX2 and
up). torchao's weight-only int8 was measured here too: it installs next to torch 2.13, but in
eager mode on this CPU it was 3.4x slower than float32 (no fused CPU kernel), while
``quantize_dynamic`` was 5.6x faster (a 2816 x 11264 x 2816 MLP, 4 rows), so torch's own is used
and nothing is added to the dependencies.

The LM head stays float32 by default (``lm_head=False``): it decides every token, and it is a
small share of a deep decoder's weights (see benchmarks/decode_dtype.py for the agreement figures).
The encoder and bridge are untouched. CPU only: quantized linear modules have no CUDA kernels.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from nue_core.errors import ConfigError

QUANTIZE_MODES = ("int8",)


def check_quantize(mode: str | None) -> None:
    """Raise ConfigError unless ``mode`` is None or one of ``QUANTIZE_MODES``."""
    if mode is not None and mode not in QUANTIZE_MODES:
        raise ConfigError(f"unknown quantization '{mode}'; choose {' or '.join(QUANTIZE_MODES)}")


def _lm_head(decoder: nn.Module) -> nn.Module | None:
    """The decoder's output projection: ``get_output_embeddings()`` of it or its wrapped ``model``."""
    for owner in (decoder, getattr(decoder, "model", None)):
        getter = getattr(owner, "get_output_embeddings", None)
        if callable(getter) and isinstance(head := getter(), nn.Module):
            return head
    return None


def quantize_decoder(decoder: nn.Module, mode: str = "int8", lm_head: bool = False) -> list[str]:
    """Replace the ``nn.Linear`` layers of ``decoder`` by int8 dynamic-quantized ones, in place.

    Args:
        decoder: a float32 module on the CPU (a SpeechLM's ``decoder``).
        mode: "int8" (the only mode).
        lm_head: quantize the output projection too (default: keep it float32).

    Returns:
        the names (within ``decoder``) of the layers quantized.

    Raises:
        ConfigError: an unknown mode, a decoder not on the CPU or not in float32.
    """
    check_quantize(mode)
    params = list(decoder.parameters())
    if any(p.device.type != "cpu" for p in params):
        raise ConfigError(f"--quantize {mode} runs on the CPU only (torch's int8 linear kernels have no GPU version); "
                          "decode on a GPU in bfloat16 or float16 instead (--dtype auto does)")
    low = sorted({str(p.dtype).removeprefix("torch.") for p in params if p.is_floating_point() and p.dtype != torch.float32})
    if low:
        raise ConfigError(f"--quantize {mode} needs a float32 decoder, this one holds {', '.join(low)} weights "
                          "(use --dtype float32 or auto)")
    head = None if lm_head else _lm_head(decoder)
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    names = [name for name, m in decoder.named_modules() if type(m) is nn.Linear and m is not head]
    if names:
        with warnings.catch_warnings():  # torch marks its eager quantization API deprecated in favour of torchao
            warnings.simplefilter("ignore")
            quantize_dynamic(decoder, {name: per_channel_dynamic_qconfig for name in names}, dtype=torch.qint8,
                             inplace=True)
    return names


def is_quantized(module: nn.Module) -> bool:
    """True when ``module`` holds any dynamic-quantized linear layer."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantizedLinear

    return any(isinstance(m, DynamicQuantizedLinear) for m in module.modules())
