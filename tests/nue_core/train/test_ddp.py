"""Two CPU processes (gloo) through torchrun: the run trains and both ranks end with identical weights."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_two_process_gloo_ddp_keeps_ranks_identical(tone_data, tmp_path: Path) -> None:
    model, train, _ = tone_data
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), str(Path(__file__).with_name("ddp_worker.py")),
           str(model), str(train), str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["world"] for r in ranks] == [2, 2]
    assert "MULTI_CPU" in ranks[0]["distributed"]
    assert ranks[0]["before"] == ranks[1]["before"]          # same seeded init
    assert ranks[0]["after"] != ranks[0]["before"]           # it trained
    assert ranks[0]["after"] == ranks[1]["after"]            # DDP kept the replicas identical
    assert (out / "final" / "model.safetensors").is_file()   # written once, by rank 0
