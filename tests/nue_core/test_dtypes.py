"""Dtype names, and ``--dtype auto``: the precision plan per device, chosen from CPU flags and a measurement.

The bfloat16 branches are tested by faking what the machine reports (flags, the measured ratio,
the GPU), so they run on any CPU.
"""

import logging

import pytest
import torch

from nue_core import dtypes
from nue_core.composer import compose
from nue_core.dtypes import (
    PrecisionPlan, apply_precision, check_dtype_name, cpu_flags, plan_precision, precision_plan, resolve_dtype,
)
from nue_core.errors import ConfigError
from nue_core.generation import GenerationConfig
from tests.conftest import make_audio, tiny_config

AVX2 = frozenset({"fpu", "sse4_2", "avx", "avx2", "fma"})
AVX512_BF16 = AVX2 | {"avx512f", "avx512bw", "avx512_bf16"}
AMX = AVX2 | {"avx512f", "amx_tile", "amx_bf16"}


def test_resolve_dtype() -> None:
    assert resolve_dtype("bfloat16") is torch.bfloat16
    assert resolve_dtype(torch.float16) is torch.float16
    assert resolve_dtype(None) is None
    with pytest.raises(ConfigError, match="float32, bfloat16, float16"):
        resolve_dtype("fp8")


def test_auto_is_a_choice_not_a_dtype() -> None:
    check_dtype_name("auto")
    check_dtype_name("float16")
    with pytest.raises(ConfigError, match="auto, float32, bfloat16, float16"):
        check_dtype_name("int8")
    with pytest.raises(ConfigError):
        resolve_dtype("auto")


def test_cpu_flags_read_from_cpuinfo(tmp_path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: X\nflags\t\t: fpu avx avx2 avx512_bf16\n\nprocessor\t: 1\n")
    assert cpu_flags(info) == {"fpu", "avx", "avx2", "avx512_bf16"}
    assert cpu_flags(tmp_path / "missing") == frozenset()


@pytest.fixture(autouse=True)
def packing_not_faster(monkeypatch):
    """The packed-linear measurement answers 1.0 (no gain) unless a test says otherwise."""
    from nue_core import packed_linear

    monkeypatch.setattr(packed_linear, "measure_packed_speedup", lambda *a, **k: 1.0)


@pytest.fixture
def no_measurement(monkeypatch):
    """The measurement must not run: a CPU without native bfloat16 is decided by its flags alone."""
    def refuse(*args, **kwargs):
        raise AssertionError("measured although the flags rule bfloat16 out")

    monkeypatch.setattr(dtypes, "measure_bf16_speedup", refuse)


def test_avx2_cpu_gets_float32_without_measuring(no_measurement) -> None:
    plan = plan_precision("cpu", flags=AVX2)
    assert plan == PrecisionPlan.uniform(torch.float32, plan.reason)
    assert "avx2" in plan.reason and "not native" in plan.reason
    assert plan.describe().startswith("precision: float32 (cpu: avx2;")


@pytest.mark.parametrize("flags", [AVX512_BF16, AMX], ids=["avx512_bf16", "amx"])
def test_native_bf16_cpu_measured_faster_gets_a_bfloat16_decoder(monkeypatch, flags) -> None:
    monkeypatch.setattr(dtypes, "measure_bf16_speedup", lambda: 4.4)
    plan = plan_precision("cpu", flags=flags)
    assert (plan.encoder, plan.bridge, plan.decoder) == (torch.float32, torch.float32, torch.bfloat16)
    assert "4.4x" in plan.reason and ("avx512_bf16" in plan.reason or "amx_bf16" in plan.reason)
    assert plan.summary() == "bfloat16 decoder, float32 encoder+bridge"


def test_native_bf16_cpu_measured_not_faster_stays_float32(monkeypatch) -> None:
    monkeypatch.setattr(dtypes, "measure_bf16_speedup", lambda: 0.9)
    plan = plan_precision("cpu", flags=AVX512_BF16)
    assert plan.is_uniform and plan.decoder is torch.float32
    assert "0.90x" in plan.reason and "not faster" in plan.reason


@pytest.mark.parametrize("bf16, low", [(True, torch.bfloat16), (False, torch.float16)])
def test_cuda_plan(monkeypatch, bf16, low) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "Fake GPU")
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    plan = plan_precision("cuda")
    assert (plan.encoder, plan.bridge, plan.decoder) == (torch.float32, low, low)
    assert plan.reason.startswith("Fake GPU")


def test_measurement_is_short_and_cached() -> None:
    import time

    dtypes.measure_bf16_speedup.cache_clear()
    start = time.perf_counter()
    ratio = dtypes.measure_bf16_speedup()
    first = time.perf_counter() - start
    assert ratio > 0
    start = time.perf_counter()
    assert dtypes.measure_bf16_speedup() == ratio  # cached: no second measurement
    assert time.perf_counter() - start < 0.01
    # ~0.1 s of products, plus one warm-up each; a slow emulated bfloat16 product on a busy machine adds some.
    assert first < 2.0


def test_this_machine_never_gets_bfloat16_unless_native_and_faster() -> None:
    plan = plan_precision("cpu")
    flags = cpu_flags()
    if not flags & {"avx512_bf16", "amx_bf16"}:
        assert plan.decoder is torch.float32 and plan.is_uniform


def test_explicit_dtype_casts_every_part_and_none_keeps_the_model() -> None:
    assert precision_plan(None) is None
    assert precision_plan("bfloat16") == PrecisionPlan.uniform(torch.bfloat16, "as asked")
    with pytest.raises(ConfigError, match="CPU only"):
        precision_plan("auto", "cuda", quantize="int8")
    with pytest.raises(ConfigError, match="unknown quantization"):
        precision_plan("float32", quantize="int4")


def test_auto_with_int8_keeps_the_decoder_float32(monkeypatch) -> None:
    monkeypatch.setattr(dtypes, "plan_precision",
                        lambda device=None, flags=None, features=1024: PrecisionPlan(torch.float32, torch.float32,
                                                                                     torch.bfloat16, "x"))
    plan = precision_plan("auto", "cpu", quantize="int8")
    assert plan.decoder is torch.float32 and plan.quantize == "int8"
    assert plan.summary() == "float32, int8 decoder linears"


def _model():
    torch.manual_seed(0)
    model = compose(tiny_config()).eval()
    with torch.no_grad():
        model.decoder.model.get_output_embeddings().weight.mul_(8.0)
    return model


def test_mixed_plan_decodes_with_the_speech_vectors_cast_to_the_decoder_dtype(monkeypatch, caplog) -> None:
    """The bfloat16 branch end to end: float32 encoder and bridge, bfloat16 decoder."""
    monkeypatch.setattr(dtypes, "cpu_flags", lambda path=None: AVX512_BF16)
    monkeypatch.setattr(dtypes, "measure_bf16_speedup", lambda: 3.0)
    model = _model()
    with caplog.at_level(logging.INFO, logger="nue_core.dtypes"):
        plan = apply_precision(model, "auto", "cpu")
        apply_precision(model, "auto", "cpu")  # the same plan again: not logged again
    assert plan is not None and plan.decoder is torch.bfloat16
    assert [r.getMessage() for r in caplog.records] == [plan.describe()]
    assert model.input_dtype is torch.float32
    assert next(model.bridge.parameters()).dtype is torch.float32
    assert next(model.decoder.parameters()).dtype is torch.bfloat16
    waves, lengths = make_audio([0.6, 0.4])
    with torch.no_grad():
        speech = model.encode_speech(waves, lengths)
        assert speech.embeds.dtype is torch.float32
        assert model.pack_prompt(speech, left_pad=True).embeds.dtype is torch.bfloat16
        ids = model.generate(waves, lengths, GenerationConfig(max_new_tokens=3, repetition_limit=0))
    assert len(ids) == 2


def test_transcriber_takes_auto_and_says_what_it_picked(monkeypatch) -> None:
    from nue_core.inference import Transcriber

    monkeypatch.setattr(dtypes, "cpu_flags", lambda path=None: AVX2)
    model = _model()
    transcriber = Transcriber(model, dtype="auto", generation=GenerationConfig(max_new_tokens=2))
    assert transcriber.precision is not None and transcriber.precision.decoder is torch.float32
    assert "avx2" in transcriber.precision.describe()
    assert Transcriber(model, dtype=None).precision is None  # None: the model as it is


@pytest.mark.parametrize("ratio, packed", [(3.3, True), (0.7, False)])
def test_float32_cpu_packs_decoder_linears_only_when_measured_faster(monkeypatch, ratio, packed) -> None:
    from nue_core import packed_linear

    widths = []
    monkeypatch.setattr(packed_linear, "measure_packed_speedup", lambda features=1024, **k: widths.append(features) or ratio)
    plan = plan_precision("cpu", flags=AVX2, features=2816)
    assert plan.pack is packed and plan.decoder is torch.float32 and widths == [2816]
    assert ("packed linears measured 3.3x" in plan.reason) is packed
    assert ("packed decoder linears" in plan.summary()) is packed


def test_int8_is_not_packed_and_explicit_dtypes_never_pack(monkeypatch) -> None:
    from nue_core import packed_linear

    monkeypatch.setattr(packed_linear, "measure_packed_speedup", lambda *a, **k: 3.0)
    monkeypatch.setattr(dtypes, "cpu_flags", lambda path=None: AVX2)
    assert precision_plan("auto", "cpu").pack
    assert not precision_plan("auto", "cpu", quantize="int8").pack
    assert not precision_plan("float32", "cpu").pack


def test_auto_packs_a_wide_decoder_and_decodes_the_same(monkeypatch) -> None:
    from nue_core import packed_linear
    from nue_core.packed_linear import is_packed

    if not packed_linear.packing_available():
        pytest.skip("no oneDNN packed linear in this torch build")
    monkeypatch.setattr(packed_linear, "measure_packed_speedup", lambda *a, **k: 3.0)
    monkeypatch.setattr(dtypes, "cpu_flags", lambda path=None: AVX2)
    torch.manual_seed(0)
    model = compose(tiny_config()).eval()
    with torch.no_grad():
        model.decoder.model.get_output_embeddings().weight.mul_(8.0)
    waves, lengths = make_audio([0.6, 1.0])
    cfg = GenerationConfig(max_new_tokens=6, repetition_limit=0)
    with torch.inference_mode():
        plain = model.generate(waves, lengths, cfg)
        plan = apply_precision(model, "auto", "cpu")
        assert plan is not None and plan.pack and is_packed(model.decoder)
        assert model.generate(waves, lengths, cfg) == plain
