"""Load on ``nue serve``: throughput and latency with 1, 4, 16 and 64 concurrent clients.

The embedded default model (``nue_core.load("default")``) is served in this process (uvicorn on
127.0.0.1, a free port); clients are threads posting multipart requests over HTTP, each sending
its next request as soon as the previous one is answered. Clips are connected digits made by
joining FSDD recordings (``$NUE_FSDD`` or /work/shared/data/fsdd, else the model's examples),
about 4-6 s each. Every transcript is checked against the one-client run of the same clip.

Prints, per concurrency: requests, audio seconds per wall second, p50/p95 latency, and the
throughput ratio to one client (target: 16 clients >= 5x one client); plus the CPU flags and the
torch version.

    python benchmarks/serve_load.py [--requests-per-client 4] [--clips 64]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import tempfile
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import decode_common as common  # noqa: E402

LEVELS = (1, 4, 16, 64)


def make_clips(count: int, rate: int = 16000, seed: int = 0) -> list[bytes]:
    """``count`` wav files (bytes) of 8-12 joined digit recordings with short pauses."""
    import soundfile as sf

    from nue_core.data.audio import load_audio

    folder = Path(os.environ.get("NUE_FSDD", "/work/shared/data/fsdd")) / "recordings"
    paths = sorted(folder.glob("*.wav")) if folder.is_dir() else []
    if not paths:
        from nue_core.checkpoint import DEFAULT_MODEL_DIR

        paths = sorted((DEFAULT_MODEL_DIR / "examples").glob("*.wav"))
    rng = np.random.default_rng(seed)
    cache: dict[Path, np.ndarray] = {}
    clips = []
    for _ in range(count):
        pieces = []
        for k in rng.choice(len(paths), size=int(rng.integers(8, 13))):
            path = paths[int(k)]
            if path not in cache:
                cache[path] = load_audio(path, rate)
            pieces += [cache[path], np.zeros(int(rate * rng.uniform(0.05, 0.25)), dtype=np.float32)]
        buf = io.BytesIO()
        sf.write(buf, np.concatenate(pieces), rate, format="WAV")
        clips.append(buf.getvalue())
    return clips


def run_level(url: str, clips_dir: Path, seconds: list[float], clients: int, per_client: int
              ) -> tuple[float, list[float], dict[int, str], float]:
    """(audio s per wall s, latencies, clip -> text, wall seconds) for ``clients`` closed-loop clients,
    sent by ``load_clients.py`` in a process of its own."""
    import json
    import subprocess

    cmd = [sys.executable, str(Path(__file__).resolve().parent / "load_clients.py"), url, str(clips_dir),
           "--clients", str(clients), "--per-client", str(per_client)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(f"load generator failed: {proc.stderr.strip()[-2000:]}")
    result = json.loads(proc.stdout)
    done = result["done"]
    audio = sum(seconds[k] for k, _, _ in done)
    return audio / result["wall"], [lat for _, lat, _ in done], {k: text for k, _, text in done}, result["wall"]


def main(argv: list[str] | None = None) -> dict[int, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", default=",".join(map(str, LEVELS)), help="concurrent clients to measure")
    parser.add_argument("--requests-per-client", type=int, default=4, help="at 1 and 4 clients: 4x this")
    parser.add_argument("--clips", type=int, default=64)
    args = parser.parse_args(argv)
    levels = [int(x) for x in args.levels.split(",")]

    import torch

    import nue_core
    from nue_core.serve.app import create_app
    from nue_core.serve.server import ThreadedServer

    print(common.machine_line())
    print(f"torch {torch.__version__}, intra-op threads {torch.get_num_threads()}")
    clips = make_clips(args.clips)
    import soundfile as sf

    seconds = [sf.info(io.BytesIO(c)).duration for c in clips]
    print(f"{len(clips)} clips, {statistics.mean(seconds):.1f} s each on average")
    model = nue_core.load("default")
    reference: dict[int, str] = {}
    rows = []
    temp = tempfile.TemporaryDirectory(prefix="nue-serve-load-")
    folder = Path(temp.name)
    for k, clip in enumerate(clips):
        (folder / f"{k}.wav").write_bytes(clip)
    with ThreadedServer(create_app({"default": model})) as server:
        run_level(server.url, folder, seconds, 1, 1)  # warm-up
        for clients in levels:
            # Few clients send more each, so every level measures a few seconds at least.
            per_client = args.requests_per_client * (4 if clients <= 4 else 1)
            # One unmeasured round first: the first batches of a new size build oneDNN kernels.
            run_level(server.url, folder, seconds, clients, 1)
            rate, latencies, texts, wall = run_level(server.url, folder, seconds, clients, per_client)
            for k, text in texts.items():
                if reference.setdefault(k, text) != text:
                    raise SystemExit(f"clip {k}: transcript at {clients} clients differs from before")
            latencies.sort()
            p50 = statistics.median(latencies)
            p95 = latencies[min(len(latencies) - 1, int(round(0.95 * (len(latencies) - 1))))]
            rows.append((clients, len(latencies), wall, rate, p50, p95))
    base = rows[0][3]
    print(f"{'clients':>7} {'requests':>8} {'wall s':>7} {'audio s/s':>9} {'p50 s':>7} {'p95 s':>7} {'vs 1':>6}")
    for clients, n, wall, rate, p50, p95 in rows:
        print(f"{clients:>7} {n:>8} {wall:>7.1f} {rate:>9.1f} {p50:>7.2f} {p95:>7.2f} {rate / base:>5.1f}x")
    if 16 in levels and levels[0] == 1:
        ratio16 = rows[levels.index(16)][3] / base
        print(f"16 clients: {ratio16:.1f}x one client (target >= 5x): {'met' if ratio16 >= 5 else 'NOT met'}")
    temp.cleanup()
    return {clients: rate for clients, _, _, rate, _, _ in rows}


if __name__ == "__main__":
    main()
