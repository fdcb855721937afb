#!/usr/bin/env python
"""Training throughput (audio-seconds per wall-second) and peak memory, tiny recipe model vs base size.

    python benchmarks/train_throughput.py            # both models, a few steps each (a few minutes on CPU)
    python benchmarks/train_throughput.py --steps 2 --seconds 2

Each model runs in its own subprocess, so the peak RSS printed is that model's own. The step is the
trainer's: forward (LM + CTC loss), backward, clipping, AdamW. Weights are random; speed does not
depend on them. Models:
  tiny: recipes/fsdd_digits/model.yaml (byte tokenizer instead of the recipe's word vocabulary)
  base: HuBERT-base encoder (95M) + conv bridge + a ~100M-parameter GPT-NeoX decoder (14 x 768)
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

BASE = {
    "encoder": {"name": "hubert", "config": {"feat_extract_norm": "group", "conv_bias": False, "mask_time_prob": 0.05}},
    "bridge": {"name": "conv", "kernel_sizes": [4, 4], "strides": [2, 2], "ctc_head": True},
    "decoder": {"name": "gpt-neox", "tokenizer": "byte", "config": {
        "hidden_size": 768, "num_hidden_layers": 14, "num_attention_heads": 12, "intermediate_size": 3072,
        "max_position_embeddings": 1024, "rotary_pct": 0.25}},
    "prompt": {"prefix": "<s>", "postfix": ""},
    "ctc_weight": 0.3,
}


def model_config(name: str) -> dict:
    if name == "base":
        return BASE
    from nue_core.config import read_yaml_mapping  # the one bounded YAML reader

    config = read_yaml_mapping(REPO / "recipes" / "fsdd_digits" / "model.yaml", "config", "a model config")
    config["decoder"]["tokenizer"] = "byte"
    return config


def measure(name: str, steps: int, batch: int, seconds: float) -> dict:
    """Run warm-up + ``steps`` training steps on random audio; return throughput and memory."""
    import torch

    from nue_core.composer import compose

    torch.manual_seed(0)
    model = compose(model_config(name)).train()
    params = sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    rate = model.sample_rate
    waves = torch.randn(batch, int(seconds * rate)) * 0.1
    lengths = torch.full((batch,), waves.shape[1])
    targets = model.target_ids(["three seven one two five eight"] * batch)

    def step() -> None:
        out = model(waves, lengths, targets)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # warm-up (allocator, lazy init)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    elapsed = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    return {"model": name, "params_m": params / 1e6, "audio_s_per_s": steps * batch * seconds / elapsed,
            "step_s": elapsed / steps, "peak_rss_mb": peak_mb, "threads": torch.get_num_threads(),
            "batch": f"{batch} x {seconds:g} s"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--tiny-batch", type=int, default=16)
    p.add_argument("--base-batch", type=int, default=2)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--only", choices=["tiny", "base"], help=argparse.SUPPRESS)  # the per-model subprocess
    args = p.parse_args()
    if args.only:
        batch = args.tiny_batch if args.only == "tiny" else args.base_batch
        print(json.dumps(measure(args.only, args.steps, batch, args.seconds)))
        return
    rows = []
    for name in ("tiny", "base"):
        cmd = [sys.executable, __file__, "--only", name, "--steps", str(args.steps), "--seconds", str(args.seconds),
               "--tiny-batch", str(args.tiny_batch), "--base-batch", str(args.base_batch)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"{'model':6} {'params':>8} {'batch':>10} {'step s':>8} {'audio-s/s':>10} {'peak RSS':>10} threads")
    for r in rows:
        print(f"{r['model']:6} {r['params_m']:7.1f}M {r['batch']:>10} {r['step_s']:8.2f} "
              f"{r['audio_s_per_s']:10.1f} {r['peak_rss_mb']:8.0f}MB {r['threads']:>7}")
    print(f"tiny / base throughput ratio: {rows[0]['audio_s_per_s'] / rows[1]['audio_s_per_s']:.1f}x")


if __name__ == "__main__":
    main()
