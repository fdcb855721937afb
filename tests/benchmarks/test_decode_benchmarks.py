"""Each decode benchmark runs end to end in its --smoke mode (random tiny model, a few clips)."""

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _main(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.mark.slow
def test_batched_vs_reference_smoke(capsys):
    results = _main("decode_batched")(["--smoke"])
    assert results["tiny"]["identical"]  # batched + KV cache gives the released path's tokens
    assert "throughput ratio" in capsys.readouterr().out


@pytest.mark.slow
def test_bridges_smoke():
    results = _main("decode_bridges")(["--smoke"])
    assert results["conv"]["vectors_per_s"] > 0 and results["ctc-compress"]["vectors_per_s"] > 0


@pytest.mark.slow
def test_dtype_smoke():
    results = _main("decode_dtype")(["--smoke"])
    assert results["default"]["float32"]["seconds"] > 0 and 0 <= results["default"]["int8"]["agreement"] <= 1


@pytest.mark.slow
def test_flops_smoke():
    results = _main("decode_flops")(["--smoke"])
    assert results["tiny"]["gflop_per_audio_s"] > 0 and results["tiny"]["bound_rtf"] > 0


@pytest.mark.slow
def test_paper_speed_smoke(capsys):
    results = _main("paper_speed")(["--smoke"])
    assert results["prefill"]["gflop"] > 0 and results["step"]["floor_s"] > 0
    assert results["throughput"]["identical"]  # the engine gives the released path's tokens
    assert "[decode step, batch 1]" in capsys.readouterr().out


@pytest.mark.slow
def test_mixed_lengths_smoke(capsys):
    results = _main("decode_batched")(["--only-mixed", "--smoke"])
    assert results["mixed"]["identical"] and results["mixed"]["chunks"] >= results["mixed"]["clips"]
    assert "continuous" in capsys.readouterr().out


def test_benchmarks_leave_autograd_on():
    import torch

    assert torch.is_grad_enabled()  # a benchmark run in-process must not switch gradients off for others


def test_only_paper_implies_paper(monkeypatch):
    """`--only-paper` alone used to skip the tiny model and run nothing: it asks for the paper model."""
    main = _main("decode_batched")
    common = main.__globals__["common"]
    asked = []
    monkeypatch.setattr(common, "tiny_model", lambda *a, **k: pytest.fail("--only-paper built the tiny model"))
    monkeypatch.setattr(common, "paper_model", lambda layers, *a, **k: asked.append(layers))  # None: "skipped"
    assert main(["--only-paper", "--paper-layers", "2"]) == {}
    assert asked == [2]


def test_ctc_prefix_speed_smoke():
    """The vectorised recursion agrees with the frame loop on every benchmarked shape."""
    results = _main("ctc_prefix_speed")(["--smoke"])
    assert results and all(r["max_diff"] < 1e-3 for r in results.values())
