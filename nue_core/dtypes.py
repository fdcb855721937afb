"""The floating-point dtypes a model may be built or run in, by the names configs and flags use.

``auto`` (the decoding default) is not a dtype but a choice made per machine by ``plan_precision``:

- CUDA: the decoder and bridge in bfloat16 where the GPU supports it, else float16; the encoder
  stays float32 (its convolutions and feature front end are a small share of the work and the
  most sensitive to low precision).
- CPU: bfloat16 for the decoder only when the CPU reports native bfloat16
  (``avx512_bf16`` or ``amx_bf16``) AND a short bf16-vs-fp32 matmul measurement on this machine
  confirms bfloat16 is faster (the encoder and bridge, which hold the convolutions, stay
  float32); float32 everywhere else. On an AVX2-only CPU bfloat16 matmuls are
  emulated and can be 100x slower, so nothing is assumed: both conditions must hold.

The encoder stays float32 on every device under ``auto``; each part's input is cast to its dtype
at the boundary (``SpeechLM.encode_speech`` and ``SpeechLM.pack_prompt``).
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import torch

from nue_core.errors import ConfigError

log = logging.getLogger(__name__)

DTypeName = Literal["float32", "bfloat16", "float16"]
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
AUTO = "auto"
# What a --dtype option accepts: a dtype name, or "auto" (plan_precision).
DTYPE_CHOICES: tuple[str, ...] = (AUTO, *DTYPES)
# CPU flags (as /proc/cpuinfo names them) meaning the CPU computes bfloat16 products natively.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
# bfloat16 must beat float32 by this factor in the measurement to be chosen (noise margin).
MIN_BF16_SPEEDUP = 1.2


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    """A torch dtype from its name; a torch dtype and None pass through unchanged.

    Raises:
        ConfigError (a ValueError): the name is not one of ``DTYPES`` ("auto" is not a dtype:
            see ``plan_precision``).
    """
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ConfigError(f"unknown dtype '{dtype}'; choose one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


def check_dtype_name(dtype: str | torch.dtype | None) -> None:
    """Raise ConfigError unless ``dtype`` is None, a torch dtype, "auto" or a name in ``DTYPES``."""
    if dtype is None or isinstance(dtype, torch.dtype) or dtype in DTYPE_CHOICES:
        return
    raise ConfigError(f"unknown dtype '{dtype}'; choose one of {', '.join(DTYPE_CHOICES)}")


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


@dataclass(frozen=True)
class PrecisionPlan:
    """The dtype of each part of a SpeechLM for decoding, and why.

    Attributes:
        encoder, bridge, decoder: the dtype each part's parameters are cast to.
        reason: one line naming what was seen (device, CPU flags, measured ratio).
        quantize: None, or "int8": the decoder's linear layers in int8 (``nue_core.quantize``).
        pack: the decoder's float32 linear layers in oneDNN's packed layout (``nue_core.packed_linear``:
            thin products of a few decoding rows run several times faster on some CPUs).
    """

    encoder: torch.dtype
    bridge: torch.dtype
    decoder: torch.dtype
    reason: str
    quantize: str | None = None
    pack: bool = False

    @classmethod
    def uniform(cls, dtype: torch.dtype, reason: str = "", quantize: str | None = None) -> PrecisionPlan:
        return cls(dtype, dtype, dtype, reason, quantize)

    @property
    def is_uniform(self) -> bool:
        return self.encoder == self.bridge == self.decoder

    def summary(self) -> str:
        """e.g. "float32", "bfloat16 decoder, float32 encoder+bridge" or "float32, int8 decoder linears"."""
        if self.is_uniform:
            text = dtype_name(self.decoder)
        elif self.bridge == self.encoder:
            text = f"{dtype_name(self.decoder)} decoder, {dtype_name(self.encoder)} encoder+bridge"
        elif self.bridge == self.decoder:
            text = f"{dtype_name(self.decoder)} decoder+bridge, {dtype_name(self.encoder)} encoder"
        else:
            text = (f"{dtype_name(self.decoder)} decoder, {dtype_name(self.bridge)} bridge, "
                    f"{dtype_name(self.encoder)} encoder")
        if self.quantize:
            return text + f", {self.quantize} decoder linears"
        return text + (", packed decoder linears" if self.pack else "")

    def describe(self) -> str:
        """The line ``nue transcribe`` prints: "precision: <summary> (<reason>)"."""
        return f"precision: {self.summary()}" + (f" ({self.reason})" if self.reason else "")

    def apply(self, model: torch.nn.Module, device: str | torch.device | None = None) -> torch.nn.Module:
        """Move ``model`` to ``device`` (None: where it is), cast each part to its dtype and
        quantize the decoder when asked, in place; logs ``describe()`` once per model and plan.

        A model without encoder/bridge/decoder attributes is cast as a whole to the decoder's dtype.

        Raises:
            ConfigError: ``quantize`` on a device or decoder dtype it does not support.
        """
        if device is not None:
            model.to(device=device)
        parts = {"encoder": self.encoder, "bridge": self.bridge, "decoder": self.decoder}
        if not all(hasattr(model, name) for name in parts):
            model.to(dtype=self.decoder)
        else:
            for name, dtype in parts.items():
                getattr(model, name).to(dtype=dtype)
        if self.quantize:
            from nue_core.quantize import is_quantized, quantize_decoder

            decoder = getattr(model, "decoder", model)
            if not is_quantized(decoder):
                quantize_decoder(decoder, self.quantize)
        elif self.pack:
            from nue_core.packed_linear import pack_linears

            pack_linears(getattr(model, "decoder", model))
        if getattr(model, "_nue_precision", None) != self:
            log.info("%s", self.describe())
            model._nue_precision = self  # type: ignore[assignment]  # a plain attribute: logged once
        return model


def cpu_flags(path: str | Path = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU feature flags of the first processor in ``path`` (empty where it cannot be read)."""
    try:
        for line in Path(path).read_text().splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip() in ("flags", "Features"):
                return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


def flags_summary(flags: frozenset[str]) -> str:
    """The flags that matter for the choice: the widest AVX and any native bfloat16, e.g. "avx2"."""
    shown = [f for f in ("avx512f", "avx2", "avx") if f in flags][:1]
    shown += [f for f in (*BF16_CPU_FLAGS, "amx_tile") if f in flags]
    return ", ".join(shown) or "no avx"


@functools.lru_cache(maxsize=None)
def measure_bf16_speedup(size: int = 512, budget_s: float = 0.1) -> float:
    """float32 time / bfloat16 time of a (size x size) @ (size x size) product on the CPU (cached per process).

    Each dtype gets about ``budget_s`` / 2 of repetitions after one warm-up, so the whole
    measurement stays near ``budget_s`` (a bfloat16 product far slower than float32 stops early).
    """
    times = {}
    for dtype in (torch.float32, torch.bfloat16):
        a = torch.randn(size, size).to(dtype)
        b = torch.randn(size, size).to(dtype)
        torch.mm(a, b)  # warm-up (kernel selection, page faults)
        reps, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < budget_s / 2 or reps == 0:
            torch.mm(a, b)
            reps += 1
        times[dtype] = elapsed / reps
    return times[torch.float32] / times[torch.bfloat16]


def plan_precision(device: str | torch.device | None = None, flags: frozenset[str] | None = None,
                   features: int = 1024) -> PrecisionPlan:
    """What ``--dtype auto`` runs a model in on ``device`` (None: "cpu"), and why.

    On the CPU a float32 decoder also gets packed linear layers when a short measurement at the
    decoder's width shows they are faster (``nue_core.packed_linear.measure_packed_speedup``).

    Args:
        device: where the model will run.
        flags: the CPU flags (default: read from /proc/cpuinfo); for tests.
        features: the decoder's width (the packing measurement's size).
    """
    device = torch.device(device or "cpu")
    f32 = torch.float32
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        if torch.cuda.is_bf16_supported():
            low, why = torch.bfloat16, "GPU supports bfloat16"
        else:
            low, why = torch.float16, "GPU without bfloat16"
        return PrecisionPlan(f32, low, low, f"{torch.cuda.get_device_name(index)}: {why}; encoder convolutions in float32")
    if device.type != "cpu":
        return PrecisionPlan.uniform(f32, f"{device.type}: no low-precision plan for this device")
    flags = cpu_flags() if flags is None else flags
    shown = flags_summary(flags)
    native = [f for f in BF16_CPU_FLAGS if f in flags]
    if not native:
        return _packed_if_faster(PrecisionPlan.uniform(f32, f"cpu: {shown}; no avx512_bf16/amx_bf16: bfloat16 not native"),
                                 features)
    ratio = measure_bf16_speedup()
    if ratio < MIN_BF16_SPEEDUP:
        return _packed_if_faster(PrecisionPlan.uniform(
            f32, f"cpu: {shown}; bfloat16 matmul measured {ratio:.2f}x float32: not faster"), features)
    # The bridge stays float32 with the encoder: both hold convolutions, and both are a small share
    # of a decode, which runs the decoder once per token.
    return PrecisionPlan(f32, f32, torch.bfloat16, f"cpu: {shown}; bfloat16 matmul measured {ratio:.1f}x float32")


def _packed_if_faster(plan: PrecisionPlan, features: int) -> PrecisionPlan:
    """``plan`` with packed decoder linears when they measure faster here (else unchanged)."""
    from nue_core.packed_linear import measure_packed_speedup

    ratio = measure_packed_speedup(features=max(64, min(int(features), 4096)))
    if ratio < MIN_BF16_SPEEDUP:
        return plan
    return replace(plan, pack=True, reason=f"{plan.reason}; packed linears measured {ratio:.1f}x")


def precision_plan(
    dtype: str | torch.dtype | None, device: str | torch.device | None = None, quantize: str | None = None,
    model: torch.nn.Module | None = None,
) -> PrecisionPlan | None:
    """The plan ``dtype`` and ``quantize`` options ask for, or None (keep the model as it is).

    "auto": ``plan_precision(device)``; a name or torch dtype: that dtype for every part; None:
    no cast (with ``quantize``: the parts' present dtypes, read from ``model``). With ``quantize``
    "auto" keeps the decoder float32 (int8 kernels take float32 activations).

    Raises:
        ConfigError: an unknown dtype name or quantization, or ``quantize`` on a GPU.
    """
    if quantize is not None:
        from nue_core.quantize import check_quantize

        check_quantize(quantize)
        if torch.device(device or "cpu").type != "cpu":
            raise ConfigError(f"--quantize {quantize} runs on the CPU only (torch's int8 linear kernels have no GPU "
                              "version); on a GPU use --dtype auto (bfloat16 or float16)")
    if dtype is None:
        if quantize is None:
            return None
        parts = [next(getattr(model, n).parameters()).dtype if model is not None and hasattr(model, n) else torch.float32
                 for n in ("encoder", "bridge", "decoder")]
        return PrecisionPlan(*parts, reason="as saved", quantize=quantize)
    if dtype == AUTO:
        width = getattr(getattr(model, "decoder", None), "embed_dim", None) or 1024
        plan = plan_precision(device, features=width)
        if quantize is not None and plan.decoder != torch.float32:
            plan = PrecisionPlan(plan.encoder, plan.encoder, torch.float32, plan.reason + "; float32 decoder for int8")
        return replace(plan, quantize=quantize, pack=plan.pack and quantize is None)
    resolved = resolve_dtype(dtype)
    assert resolved is not None
    return PrecisionPlan.uniform(resolved, "as asked", quantize)


def apply_precision(
    model: torch.nn.Module, dtype: str | torch.dtype | None, device: str | torch.device | None = None,
    quantize: str | None = None,
) -> PrecisionPlan | None:
    """Move ``model`` to ``device`` and apply ``precision_plan(dtype, device, quantize)`` in place.

    Returns:
        the plan applied, or None when neither was asked (the model is only moved).
    """
    where = device if device is not None else next((p.device for p in model.parameters()), None)
    plan = precision_plan(dtype, where, quantize, model)
    if plan is None:
        if device is not None:
            model.to(device=device)
        return None
    plan.apply(model, device)
    return plan
