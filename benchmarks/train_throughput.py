#!/usr/bin/env python
"""Training throughput through the trainer and its input pipeline (audio-seconds per wall-second),
with batches read in the training process (0 workers) and by loader workers (the default).

    python benchmarks/train_throughput.py              # tiny, recipe and base models (~10 min on 2 CPU cores)
    python benchmarks/train_throughput.py --smoke      # tiny only, 1 timed step per run (CI, seconds)
    python benchmarks/train_throughput.py --workers 0,1,2 --latency-ms 20 --models recipe

Each run is ``Trainer.fit`` on a manifest of audio files: decode, resample, augment (the FSDD
recipe's settings: speed, EQ, low-pass, noise, gain) and pad, then forward, backward, clipping and
AdamW. Throughput counts the steps after the first (the first also starts the workers and fills
the pipeline: its time is printed apart), as the audio of the mean step over the median step time
(other jobs on a shared machine stall some steps). A second pair of runs adds an artificial read latency
to every file (``--latency-ms``, default 20 ms: network storage), injected here only, to show how
much of it the loader hides. Weights are random; speed does not depend on them. Models:
  tiny:   the ``tiny`` preset (HuBERT 2 x 32 + GPT-NeoX 2 x 32, byte tokenizer): data-bound
  recipe: recipes/fsdd_digits/model.yaml (byte tokenizer instead of the recipe's word vocabulary)
  base:   HuBERT-base encoder (95M) + conv bridge + a ~100M-parameter GPT-NeoX decoder (14 x 768)
Audio: FSDD recordings (8 kHz wav, resampled to 16 kHz by the loader) for tiny and recipe, FSDD
digits joined into 2-6 s FLAC clips for base (``decode_common``; NUE_FSDD; random noise when
absent). Each model runs in its own subprocess; peak RSS is that process's high-water mark so far
(its runs follow one another; workers, forked copy-on-write, are not included). Figures are noisy on a shared machine: compare rows of one run.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import decode_common as common  # noqa: E402  (a sibling script, not a package)

from nue_core.train.data import UtteranceSet  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MODELS = ("tiny", "recipe", "base")
BASE = {
    "encoder": {"name": "hubert", "config": {"feat_extract_norm": "group", "conv_bias": False, "mask_time_prob": 0.05}},
    "bridge": {"name": "conv", "kernel_sizes": [4, 4], "strides": [2, 2], "ctc_head": True},
    "decoder": {"name": "gpt-neox", "tokenizer": "byte", "config": {
        "hidden_size": 768, "num_hidden_layers": 14, "num_attention_heads": 12, "intermediate_size": 3072,
        "max_position_embeddings": 1024, "rotary_pct": 0.25}},
    "prompt": {"prefix": "<s>", "postfix": ""},
    "ctc_weight": 0.3,
}
# Padded audio seconds per batch: the recipe's 24 s; base at what a 2-core CPU steps in seconds.
BATCH_SECONDS = {"tiny": 24.0, "recipe": 24.0, "base": 12.0}


class SlowSet(UtteranceSet):
    """An UtteranceSet whose every file read first waits ``latency`` seconds (benchmark only).

    Args:
        data: the set to wrap (its entries and sample rate).
        latency: seconds slept before each read, as a file on network storage costs.
    """

    def __init__(self, data: UtteranceSet, latency: float) -> None:
        super().__init__(data.entries, data.sample_rate, skip_bad=data.skip_bad)
        self.latency = latency

    def audio(self, index: int) -> np.ndarray:
        time.sleep(self.latency)
        return super().audio(index)


def model_config(name: str) -> Any:
    if name == "base":
        return BASE
    if name == "tiny":
        return "tiny"
    from nue_core.config import read_yaml_mapping  # the one bounded YAML reader

    config = read_yaml_mapping(REPO / "recipes" / "fsdd_digits" / "model.yaml", "config", "a model config")
    config["decoder"]["tokenizer"] = "byte"
    return config


def write_manifest(folder: Path, name: str, count: int) -> Path:
    """A JSONL manifest of ``count`` audio files for ``name``'s runs (see the module doc)."""
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    if name == "base":
        for i, clip in enumerate(common.joined_clips(count, 2.0, 6.0, seed=1)):
            sf.write(str(folder / f"{i}.flac"), clip, common.SR)
            rows.append({"audio": f"{i}.flac", "text": "three seven one two", "id": f"b{i}"})
    elif common.FSDD.is_dir():
        files = sorted(common.FSDD.glob("*.wav"))
        picked = [files[i] for i in np.random.default_rng(0).permutation(len(files))[:count]]
        rows = [{"audio": str(f), "text": common.DIGITS[int(f.name[0])], "id": f.stem} for f in picked]
    else:  # 8 kHz noise files: the loader still decodes and resamples them
        rng = np.random.default_rng(0)
        for i in range(count):
            clip = (rng.standard_normal(int(8000 * rng.uniform(0.3, 0.8))) * 0.1).astype(np.float32)
            sf.write(str(folder / f"{i}.wav"), clip, 8000, subtype="PCM_16")
            rows.append({"audio": f"{i}.wav", "text": common.DIGITS[i % 10], "id": f"n{i}"})
    manifest = folder / "train.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return manifest


def measure(name: str, manifest: Path, workers: int, latency_ms: float, steps: int, batch_seconds: float,
            run_dir: Path) -> dict[str, Any]:
    """One ``Trainer.fit`` of ``steps + 1`` steps; throughput over the steps after the first."""
    import torch

    from nue_core.composer import compose
    from nue_core.config import read_yaml_mapping
    from nue_core.train.config import TrainConfig
    from nue_core.train.trainer import Trainer

    recipe = read_yaml_mapping(REPO / "recipes" / "fsdd_digits" / "train.yaml", "train config", "train settings")
    config = TrainConfig(max_steps=steps + 1, batch_seconds=batch_seconds, augment=recipe["augment"], lr=1e-4,
                         warmup_steps=0, eval_every=10**6, save_every=10**6, progress=False, tensorboard=False,
                         num_workers=workers)
    torch.manual_seed(0)
    model = compose(model_config(name)).train()
    data, _ = UtteranceSet.from_manifest(manifest, model.sample_rate, 16.0, skip_bad=False)
    if latency_ms > 0:
        data = SlowSet(data, latency_ms / 1000)
    trainer = Trainer(model, config, data, None, run_dir)
    marks: list[tuple[float, float]] = []  # (end time, audio seconds) per step
    step = trainer.train_step

    def timed_step() -> dict[str, float] | None:
        stats = step()
        marks.append((time.perf_counter(), stats["samples"] / data.sample_rate if stats else 0.0))
        return stats

    trainer.train_step = timed_step  # type: ignore[method-assign]
    start = time.perf_counter()
    trainer.fit()
    ends = [end for end, _ in marks]
    # The median step: other jobs on a shared machine stall some steps; the typical one is the figure.
    step_s = float(np.median(np.diff(ends)))
    audio = float(np.mean([a for _, a in marks[1:]]))
    return {"model": name, "params_m": sum(p.numel() for p in model.parameters()) / 1e6, "workers": workers,
            "latency_ms": latency_ms, "steps": len(marks) - 1, "audio_s_per_s": audio / step_s,
            "step_s": step_s, "first_step_s": ends[0] - start,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_model(name: str, workers: list[int], latency_ms: float, steps: int, clips: int, batch_seconds: float) -> list[dict]:
    """Every (latency, workers) run of one model, alternating worker counts (drift hits both alike)."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="nue-train-bench-") as tmp:
        manifest = write_manifest(Path(tmp) / "audio", name, clips)
        for latency in (0.0, latency_ms) if latency_ms > 0 else (0.0,):
            for w in workers:
                rows.append(measure(name, manifest, w, latency, steps, batch_seconds, Path(tmp) / f"run-{len(rows)}"))
    return rows


def parse_workers(text: str) -> list[int]:
    """``"0,auto"`` -> [0, the default worker count of this machine] (``resolve_workers``)."""
    from nue_core.train.loader import resolve_workers

    import torch

    out = [resolve_workers(None, torch.cuda.is_available()) if w.strip() == "auto" else int(w) for w in text.split(",")]
    return list(dict.fromkeys(out))  # "0,auto" on a one-core machine is one run


def print_table(rows: list[dict]) -> None:
    print(f"{'model':7} {'params':>8} {'workers':>7} {'latency':>8} {'steps':>5} {'step s':>7} "
          f"{'first s':>7} {'audio-s/s':>10} {'peak RSS':>9}")
    for r in rows:
        print(f"{r['model']:7} {r['params_m']:7.1f}M {r['workers']:>7} {r['latency_ms']:6.0f}ms {r['steps']:>5} "
              f"{r['step_s']:7.3f} {r['first_step_s']:7.2f} {r['audio_s_per_s']:10.1f} {r['peak_rss_mb']:7.0f}MB")
    for model in dict.fromkeys(r["model"] for r in rows):
        for latency in dict.fromkeys(r["latency_ms"] for r in rows):
            runs = {r["workers"]: r["audio_s_per_s"] for r in rows if r["model"] == model and r["latency_ms"] == latency}
            if 0 in runs and len(runs) > 1:
                gains = ", ".join(f"{w} workers {v / runs[0]:.2f}x" for w, v in runs.items() if w)
                print(f"{model}, {latency:.0f} ms per file: vs 0 workers: {gains}")
        base = {r["workers"]: r["step_s"] for r in rows if r["model"] == model and r["latency_ms"] == 0}
        slow = {r["workers"]: r["step_s"] for r in rows if r["model"] == model and r["latency_ms"] > 0}
        for w in (w for w in slow if w and w in base and 0 in base and 0 in slow):
            added, added_w = slow[0] - base[0], slow[w] - base[w]
            share = f"{1 - max(added_w, 0.0) / added:.0%}" if added > 0 else "n/a (noise)"
            print(f"{model}: {w} workers hide {share} of the per-file latency ({added * 1000:.0f} ms/step added "
                  f"with 0 workers, {added_w * 1000:.0f} ms with {w})")


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated: tiny, recipe, base")
    p.add_argument("--workers", default="0,auto", help="worker counts to compare; auto = the default here")
    p.add_argument("--latency-ms", type=float, default=20.0, help="artificial read latency per file; 0 = no such runs")
    p.add_argument("--steps", type=int, default=None, help="timed steps per run (default 12; base 4)")
    p.add_argument("--clips", type=int, default=400)
    p.add_argument("--smoke", action="store_true", help="tiny model, 1 timed step, workers 0 and 1 (CI)")
    p.add_argument("--only", choices=MODELS, help=argparse.SUPPRESS)  # the per-model subprocess
    args = p.parse_args(argv)
    workers = parse_workers("0,1" if args.smoke else args.workers)
    if args.only or args.smoke:
        names = [args.only] if args.only else ["tiny"]
        rows = []
        for name in names:
            steps = args.steps or (1 if args.smoke else 4 if name == "base" else 12)
            batch = 2.0 if args.smoke else BATCH_SECONDS[name]
            rows += run_model(name, workers, args.latency_ms, steps, 12 if args.smoke else args.clips, batch)
        if args.only:
            print(json.dumps(rows))
            return rows
    else:
        rows = []
        for name in args.models.split(","):
            cmd = [sys.executable, __file__, "--only", name, "--workers", ",".join(map(str, workers)),
                   "--latency-ms", str(args.latency_ms), "--clips", str(args.clips)]
            cmd += ["--steps", str(args.steps)] if args.steps else []
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(f"{name}: {done.stderr[-2000:]}")
            rows += json.loads(done.stdout.strip().splitlines()[-1])
    print(common.machine_line())
    print_table(rows)
    return rows


if __name__ == "__main__":
    main()
