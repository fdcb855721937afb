"""benchmarks/gpu_check.py: the smoke run reports every phase, and the budget skips phases cleanly."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))
import gpu_check  # noqa: E402

DECODE = ["released_b1", "engine_b1", "engine_b16", "engine_b64"]
FIGURES = {"wall_s", "audio_s", "rtfx", "tokens", "tokens_per_s", "peak_gb", "clips"}


def _json_line(out: str) -> dict:
    lines = [x for x in out.splitlines() if x.startswith("GPU_CHECK_JSON ")]
    assert len(lines) == 1
    return json.loads(lines[0].removeprefix("GPU_CHECK_JSON "))


def test_smoke_reports_every_phase_and_the_engine_matches_the_released_path(tmp_path: Path, capsys) -> None:
    grad = torch.is_grad_enabled()
    rc, summary = gpu_check.main(["--smoke", "--skip-tests", "--budget-s", "60", "--device", "cpu",
                                  "--json", str(tmp_path / "gpu.json")])
    assert torch.is_grad_enabled() == grad
    out = capsys.readouterr().out
    assert rc == 0 and summary["ok"]
    written = json.loads((tmp_path / "gpu.json").read_text())
    assert _json_line(out) == written == json.loads(json.dumps(summary, default=str))
    phases = summary["phases"]
    assert list(phases) == gpu_check.PHASES
    assert phases["machine"]["status"] == "done" and phases["machine"]["name"]
    assert phases["build"]["status"] == "done" and phases["build"]["parameters_b"] > 0
    for name in DECODE:
        p = phases[name]
        assert p["status"] == "done", (name, p)
        assert FIGURES <= set(p) and p["rtfx"] > 0 and p["tokens"] > 0 and p["peak_gb"] > 0
        assert f"[{name}]" in out
    assert phases["released_b1"]["clips"] >= 1
    for name in DECODE[1:]:  # float32: the engine's ids are the released path's on every shared clip
        p = phases[name]
        assert p["clips"] == summary["config"]["clips"] and not p["cut_short"]
        assert p["shared_clips"] == phases["released_b1"]["clips"]
        assert p["identical"] is True and p["agreement"] == 1.0
    assert phases["tests"]["status"] == "skipped" and summary["skipped"] == ["tests"]
    assert "== GPU check summary" in out


@pytest.mark.parametrize("budget", ["0", "1"])
def test_a_spent_budget_skips_the_remaining_phases_and_still_exits_0(budget: str, capsys) -> None:
    rc, summary = gpu_check.main(["--smoke", "--budget-s", budget, "--device", "cpu"])
    out = capsys.readouterr().out
    assert rc == 0 and summary["ok"]
    assert summary["phases"]["machine"]["status"] == "done"
    assert summary["skipped"] == gpu_check.PHASES[1:]
    assert all(summary["phases"][n]["status"] == "skipped" for n in gpu_check.PHASES[1:])
    assert "[build] skipped: time budget spent" in out
    assert _json_line(out)["skipped"] == gpu_check.PHASES[1:]


def test_missing_cuda_is_reported_not_raised(capsys) -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    rc, summary = gpu_check.main(["--smoke", "--device", "cuda", "--budget-s", "5"])
    assert rc == 1 and not summary["ok"]
    assert summary["phases"]["machine"]["status"] == "failed"
    assert _json_line(capsys.readouterr().out)["skipped"] == gpu_check.PHASES[1:]
