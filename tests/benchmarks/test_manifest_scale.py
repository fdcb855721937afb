"""benchmarks/manifest_scale.py --smoke: 10,000 lines read and checked in every mode, in child processes."""

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def test_manifest_scale_smoke(capsys) -> None:
    spec = importlib.util.spec_from_file_location("manifest_scale", BENCH / "manifest_scale.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows = module.main(["--smoke"])
    assert [r["mode"] for r in rows] == ["none", "quick", "full"]
    assert all(r["lines"] == 10_000 and r["scan_s"] > 0 and r["rss_peak_mb"] > 0 for r in rows)
    none, quick, _ = rows
    assert none["checked"] == 10_000 and quick["checked"] == 2_000  # per-file checks timed on a sample
    assert "flags:" in capsys.readouterr().out
