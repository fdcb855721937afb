"""benchmarks/serve_load.py runs end to end on a few clips (a load generator in its own process)."""

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.mark.slow
def test_serve_load_smoke(capsys):
    spec = importlib.util.spec_from_file_location("serve_load", BENCH / "serve_load.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rates = module.main(["--clips", "4", "--requests-per-client", "1", "--levels", "1,2"])
    assert set(rates) == {1, 2} and all(rate > 0 for rate in rates.values())
    assert "audio s/s" in capsys.readouterr().out
