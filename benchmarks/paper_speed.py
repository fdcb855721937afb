"""Paper-size decoding against this machine's limits, measured in one run.

On the paper-size random-weight model (HuBERT-base + conv bridge + GPT-NeoX 36 x 2816, 3.7 B
parameters; ``decode_common.paper_model``) it prints:

1. the machine: CPU flags, threads, the measured matmul peak of the dtype used and the measured
   memory read bandwidth (a sum over a buffer far larger than the caches);
2. prefill (encoder + bridge + prompt prefill of ``--clips`` clips at once): its FLOPs (counted by
   ``torch.utils.flop_counter``), its time and the share of the matmul peak it reaches;
   The released path runs first, on the model as built (float32); then ``--dtype`` (default auto:
   ``nue_core.dtypes.plan_precision``, e.g. packed float32 linears) is applied for the rest.
3. one decoding step at batch 1: its time against the floor ``bytes of weights read per step /
   bandwidth`` (every step reads every decoder weight once);
4. throughput: the released code's path (transformers' ``generate``, batch 1, one clip after the
   other) against nue-asr's engine with all clips in one running batch, ``--tokens`` new tokens
   per clip, and whether the token ids are identical;
5. with ``--profile``: the top operators of prefill and of a batched decoding step (torch.profiler).

    python benchmarks/paper_speed.py                  # the full model (about 18 GB free needed)
    python benchmarks/paper_speed.py --smoke          # seconds: a tiny random model
    python benchmarks/paper_speed.py --profile --skip-released

Shape legend: b = clips, s = samples.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
import decode_common as common  # noqa: E402

from nue_core.generation import DecodeState, GenerationConfig, start_decoding  # noqa: E402
from nue_core.dtypes import apply_precision  # noqa: E402
from nue_core.inference.engine import Engine, EngineLimits  # noqa: E402


def bandwidth(gigabytes: float = 1.0, seconds: float = 1.0) -> float:
    """Measured memory read bandwidth in bytes/s: the best of repeated sums over a large buffer."""
    x = torch.ones(int(gigabytes * 2**30 / 4))  # float32, far beyond the caches
    x.sum()
    best, end = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < end:
        start = time.perf_counter()
        x.sum()
        best = min(best, time.perf_counter() - start)
    return x.numel() * 4 / best


def prefill(model, audio: list[np.ndarray]) -> DecodeState:
    """Encoder + bridge + prompt prefill of ``audio`` as one batch (what the engine admits)."""
    waves, lengths = common.batch(audio)
    speech = model.encode_speech(waves.to(model.input_dtype), lengths)
    return start_decoding(model.decoder, model.pack_prompt(speech, left_pad=True))


def decode_steps(model, state: DecodeState, steps: int) -> DecodeState:
    """``steps`` greedy steps from ``state`` (every row continues)."""
    for _ in range(steps):
        state = state.advance(model.decoder, state.logits.argmax(dim=-1))
    return state


@torch.inference_mode()
def prefill_flops(model, audio: list[np.ndarray]) -> int:
    """FLOPs of ``prefill`` (count them before packing: the counter does not see oneDNN's operators)."""
    common.plain_weights(model)  # the FLOP counter cannot run weight-norm parametrizations
    counter = FlopCounterMode(display=False)
    with counter:
        prefill(model, audio)
    return counter.get_total_flops()


@torch.inference_mode()
def measure_prefill(model, audio: list[np.ndarray], peak: float, flops: int) -> dict:
    _, seconds = common.timed(lambda: prefill(model, audio), repeat=2)
    return {"clips": len(audio), "gflop": flops / 1e9, "seconds": seconds, "gflops": flops / seconds / 1e9,
            "share_of_peak": flops / seconds / peak}


def weight_bytes(module: torch.nn.Module) -> int:
    """Bytes of ``module``'s parameters (taken before packing: packed weights are not parameters)."""
    return sum(p.numel() * p.element_size() for p in module.parameters())


@torch.inference_mode()
def measure_step(model, clip: np.ndarray, bytes_per_s: float, weights: int, steps: int = 6) -> dict:
    state = prefill(model, [clip])
    state = decode_steps(model, state, 1)  # warm
    start = time.perf_counter()
    decode_steps(model, state, steps)
    seconds = (time.perf_counter() - start) / steps
    floor = weights / bytes_per_s
    return {"step_s": seconds, "weight_gb": weights / 1e9, "floor_s": floor, "ratio_to_floor": seconds / floor}


@torch.inference_mode()
def measure_released(model, audio: list[np.ndarray], tokens: int) -> tuple[list[list[int]], float]:
    """The released code's path: float32, batch 1, transformers' generate, one clip after the other."""
    return common.timed(lambda: [common.reference_decode(model, a, tokens) for a in audio])


@torch.inference_mode()
def measure_engine(model, audio: list[np.ndarray], tokens: int, released: tuple | None) -> dict:
    """All clips in one running batch of the engine, against the released path's ids and time."""
    cfg = GenerationConfig(max_new_tokens=tokens, repetition_limit=0)
    engine_ids, engine_s = common.timed(lambda: [r.ids for r in Engine(model, cfg, EngineLimits(
        max_rows=len(audio), max_prefill=len(audio))).run(audio)])
    out = {"clips": len(audio), "tokens": sum(map(len, engine_ids)), "engine_s": engine_s}
    if released is not None:
        released_ids, released_s = released
        out.update({"released_s": released_s, "ratio": released_s / engine_s, "identical": released_ids == engine_ids,
                    "agreement": common.agreement(released_ids, engine_ids)})
    return out


@torch.inference_mode()
def profile(model, audio: list[np.ndarray], rows: int = 10) -> None:
    """Print the top operators (self CPU time) of prefill and of 3 batched decoding steps."""
    from torch.profiler import ProfilerActivity, profile as torch_profile

    def show(name: str, fn) -> None:  # type: ignore[no-untyped-def]
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            fn()
        print(f"\n[profile: {name}] top operators by self CPU time")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows, max_name_column_width=40))

    show(f"prefill, {len(audio)} clips", lambda: prefill(model, audio))
    state = prefill(model, audio)
    show(f"3 decoding steps, batch {len(audio)}", lambda: decode_steps(model, state, 3))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny random model, seconds")
    parser.add_argument("--layers", type=int, default=36, help="decoder layers of the paper-size model")
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=24, help="new tokens per clip (max_new_tokens)")
    parser.add_argument("--skip-released", action="store_true", help="skip the released path (minutes)")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--dtype", default="auto", help="precision of the engine side (auto, float32, ...)")
    args = parser.parse_args(argv)
    print(common.machine_line())
    if args.smoke:
        model, desc = common.tiny_model(True, 0)
        args.clips, args.tokens = min(args.clips, 4), min(args.tokens, 6)
    else:
        model, desc = common.paper_model(args.layers), f"paper-size, {args.layers} layers, random weights"
        if model is None:
            return {}
    audio, _ = common.clips(args.clips, seed=7)
    weights, flops = weight_bytes(model.decoder), prefill_flops(model, audio)
    released = None if args.skip_released else measure_released(model, audio, args.tokens)
    plan = apply_precision(model, args.dtype)  # after the released path, which runs plain float32
    print(plan.describe() if plan is not None else "precision: as built")
    dtype = plan.decoder if plan is not None else next(model.decoder.parameters()).dtype
    peak = common.matmul_peak(dtype, 512 if args.smoke else 2048, 0.3 if args.smoke else 1.0)
    bytes_per_s = bandwidth(0.25 if args.smoke else 1.0, 0.3 if args.smoke else 1.0)
    print(f"model: {desc}, {dtype}; matmul peak {peak / 1e9:.0f} GFLOP/s ({dtype}), read bandwidth "
          f"{bytes_per_s / 1e9:.1f} GB/s")
    results = {"peak_gflops": peak / 1e9, "bandwidth_gbs": bytes_per_s / 1e9,
               "precision": plan.summary() if plan is not None else "as built"}
    results["prefill"] = p = measure_prefill(model, audio, peak, flops)
    print(f"[prefill] {p['clips']} clips: {p['gflop']:.0f} GFLOP in {p['seconds']:.2f} s = {p['gflops']:.0f} GFLOP/s, "
          f"{100 * p['share_of_peak']:.0f} % of the matmul peak (target >= 50 %)")
    results["step"] = s = measure_step(model, audio[0], bytes_per_s, weights)
    print(f"[decode step, batch 1] {s['step_s']:.3f} s; floor {s['weight_gb']:.2f} GB of weights / "
          f"{bytes_per_s / 1e9:.1f} GB/s = {s['floor_s']:.3f} s -> {s['ratio_to_floor']:.2f}x the floor (target <= 2x)")
    results["throughput"] = t = measure_engine(model, audio, args.tokens, released)
    line = f"[throughput] {t['clips']} clips x {args.tokens} tokens: engine (one running batch) {t['engine_s']:.1f} s"
    if "ratio" in t:
        line += (f", released path (batch 1) {t['released_s']:.1f} s -> {t['ratio']:.1f}x (target >= 8x); "
                 f"token ids identical: {t['identical']} ({100 * t['agreement']:.1f} % agree)")
    print(line)
    if args.profile:
        profile(model, audio)
    return results


if __name__ == "__main__":
    with torch.no_grad():
        main()
