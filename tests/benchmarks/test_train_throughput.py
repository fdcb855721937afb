"""benchmarks/train_throughput.py --smoke: the trainer with 0 and 1 loader workers, with and without
an artificial per-file latency, prints its table."""

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.mark.slow  # four short training runs: ~15 s alone on 2 cores, more on a busy machine
def test_train_throughput_smoke(capsys) -> None:
    sys.path.insert(0, str(BENCH))  # it imports decode_common as a sibling
    spec = importlib.util.spec_from_file_location("train_throughput", BENCH / "train_throughput.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows = module.main(["--smoke"])
    assert [(r["workers"], r["latency_ms"]) for r in rows] == [(0, 0.0), (1, 0.0), (0, 20.0), (1, 20.0)]
    assert all(r["model"] == "tiny" and r["steps"] == 1 and r["audio_s_per_s"] > 0 for r in rows)
    out = capsys.readouterr().out
    assert "flags:" in out and "audio-s/s" in out and "hide" in out
