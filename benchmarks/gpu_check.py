"""A prepared, time-boxed GPU check: the paper-size model in bfloat16, released path vs the engine.

One run on a lent GPU (time on it is short), no exploration:

    python benchmarks/gpu_check.py --json $OUT/gpu.json        # paper-size model, bfloat16, CUDA
    python benchmarks/gpu_check.py --smoke                     # seconds on a CPU: tiny random model

Phases (each prints its figures as soon as it ends, so a run cut short still reports):

0. machine: GPU name and memory, torch / CUDA versions (CPU model and flags on a CPU).
1. build: the paper-size random-weight model (HuBERT-base + conv bridge + GPT-NeoX 36 x 2816,
   ``decode_common.paper_model``; ``--smoke``: the tiny preset, random), cast to ``--dtype`` on
   ``--device``, warmed up.
2. decode: the released code's path at batch 1 (transformers' ``generate`` with prompt embeddings,
   as ``decode_common.reference_decode``) over as many clips as fit about 20 % of the budget; then
   nue-asr's continuous-batching engine with max_rows 1, 16 and 64 over all clips. Every path
   decodes ``--new-tokens`` tokens at most (repetition guard off, as the released code had none).
   Per path: wall s, audio s, RTFx (audio s / wall s), tokens/s (tokens decided, eos included),
   peak memory (CUDA: max_memory_allocated, reset per phase; CPU: the process's peak RSS so far),
   and the engine's token agreement with the released path on the clips both decoded (identical
   in float32; in bfloat16 batching changes the rounding, so the agreement % is reported).
3. tests: the device-placement tests (``DEVICE_TESTS``) in a pytest subprocess with
   ``NUE_TEST_DEVICE`` set to the device; pass / fail counts.

A global budget (``--budget-s``, default 270 s) bounds the run: a phase starts only with at least
``MIN_START_S`` left, an engine phase stops stepping at its share of what is left (its figures
then cover the clips that finished and it is marked "cut short"), and the tests get what remains.
Skipped phases print a line saying so. The last line is ``GPU_CHECK_JSON {...}`` (also written
to ``--json PATH``). Exit status: 0, or 1 when a phase failed or a test failed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import decode_common as common  # noqa: E402

from nue_core.generation import GenerationConfig  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DEVICE_TESTS = ["tests/nue_core/test_device_placement.py"]  # pytest node ids run on the device
MIN_START_S = 1.0  # a phase needs this much budget left to start
RELEASED_SHARE = 0.2  # of the budget, for the released path's batch-1 clips
TESTS_RESERVE_S = 60.0  # budget kept for the tests phase while decoding (unless --skip-tests)
ENGINE_ROWS = (1, 16, 64)
PHASES = ["machine", "build", "released_b1"] + [f"engine_b{r}" for r in ENGINE_ROWS] + ["tests"]


def log(line: str) -> None:
    print(line, flush=True)


class Clock:
    """The global budget."""

    def __init__(self, budget_s: float) -> None:
        self.start, self.budget = time.perf_counter(), budget_s

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return self.budget - self.elapsed()

    def deadline(self) -> float:
        return self.start + self.budget


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> dict:
    if device.type == "cuda":
        return {"peak_gb": torch.cuda.max_memory_allocated(device) / 2**30,
                "peak_reserved_gb": torch.cuda.max_memory_reserved(device) / 2**30, "peak_kind": "cuda allocated"}
    return {"peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, "peak_kind": "process RSS so far"}


# ------------------------------------------------------------------ phases


def machine(device: torch.device) -> dict:
    info = {"device": str(device), "torch": torch.__version__, "cuda": torch.version.cuda,
            "python": platform.python_version(), "cpu_threads": torch.get_num_threads()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(name=torch.cuda.get_device_name(device), memory_gb=props.total_memory / 2**30,
                    capability=f"{props.major}.{props.minor}", cudnn=torch.backends.cudnn.version())
        try:
            smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version,mig.mode.current", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=10)
            info["nvidia_smi"] = smi.stdout.strip()
        except Exception as exc:  # noqa: BLE001 - informative only
            info["nvidia_smi"] = f"unavailable ({type(exc).__name__})"
    else:
        name, flags = platform.processor() or platform.machine(), []
        try:
            text = Path("/proc/cpuinfo").read_text()
            name = re.search(r"model name\s*:\s*(.*)", text).group(1)  # type: ignore[union-attr]
            have = set(re.search(r"flags\s*:\s*(.*)", text).group(1).split())  # type: ignore[union-attr]
            flags = sorted(f for f in have if f.startswith(("avx", "amx", "fma", "f16c")))
        except Exception:  # noqa: BLE001 - not Linux
            pass
        info.update(name=name, cpu_count=os.cpu_count(), cpu_flags=" ".join(flags))
    return info


def build(smoke: bool, device: torch.device, dtype: torch.dtype):
    start = time.perf_counter()
    if smoke:
        model, desc = common.tiny_model(smoke=True, steps=0)
    else:
        try:
            model = common.paper_model(log=log)
        except ModuleNotFoundError as exc:  # psutil (the free-memory check) missing on a bare machine
            log(f"decode_common.paper_model unavailable ({exc}); composing the same model here")
            model = _paper_model_without_psutil()
        if model is None:
            raise RuntimeError("paper-size model not built (host memory short, see the line above)")
        desc = "paper-size random weights (HuBERT-base + conv bridge + GPT-NeoX 36 x 2816)"
    model = model.to(device=device, dtype=dtype).eval()
    if device.type == "cuda" and dtype == torch.float32:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # float32 = float32
    sync(device)
    built = time.perf_counter() - start
    return model, {"model": desc, "parameters_b": sum(p.numel() for p in model.parameters()) / 1e9,
                   "build_s": built}


def _paper_model_without_psutil():
    """``decode_common.paper_model`` without its host-memory check (same config, same weights)."""
    from transformers.initialization import no_init_weights

    from nue_core.composer import compose

    config = {"encoder": {"name": "hubert", "config": {}},
              "bridge": {"name": "conv", "kernel_sizes": [4, 4], "strides": [2, 2]},
              "decoder": {"name": "gpt-neox", "tokenizer": "byte", "config": dict(common.PAPER_DECODER)},
              "prompt": {"prefix": "<s>", "postfix": "[SEP]"}}
    with no_init_weights():
        model = compose(config)
    common.fast_fill(model)
    return model.eval()


def make_clips(n: int, smoke: bool, seed: int = 0) -> list[np.ndarray]:
    """FSDD digits (noise when FSDD is absent) joined with 0.1-0.5 s pauses: 5-10 s (smoke: 1-2 s)."""
    low, high = (1.0, 2.0) if smoke else (5.0, 10.0)
    return common.joined_clips(n, low, high, seed=seed, pool=40 if smoke else 200)


def released_decode(model, audio: np.ndarray, max_new_tokens: int) -> tuple[list[int], int]:
    """The released code's path (``decode_common.reference_generate``): (ids without eos, tokens decided)."""
    got, eos = common.reference_generate(model, audio, max_new_tokens), model.tokenizer.eos_id
    return (got[: got.index(eos)] if eos in got else got), len(got)


def released_phase(model, audio, cfg: GenerationConfig, until: float, device: torch.device) -> dict:
    """Batch 1 over the clips in order while time is left (at least one clip)."""
    outs: list[list[int]] = []
    tokens = 0
    start = time.perf_counter()
    for a in audio:
        ids, n = released_decode(model, a, cfg.max_new_tokens)
        sync(device)
        outs.append(ids)
        tokens += n
        if time.perf_counter() > until:
            break
    wall = time.perf_counter() - start
    return _figures(wall, audio[: len(outs)], tokens, device) | {"clips": len(outs), "batch": 1,
                                                                 "cut_short": False, "_ids": outs}


@torch.no_grad()
def engine_phase(model, audio, cfg: GenerationConfig, rows: int, until: float, device: torch.device) -> dict:
    """The engine with ``rows`` rows over all clips, stepping until done or ``until``."""
    from nue_core.inference.engine import Engine, EngineLimits

    engine = Engine(model, cfg, EngineLimits(max_rows=rows, max_prefill=rows, max_queued_seconds=float("inf")))
    start = time.perf_counter()
    handles = [engine.submit(a) for a in audio]
    cut = False
    while engine.has_work():
        if time.perf_counter() > until:
            cut = True
            break
        engine.step()
    sync(device)
    wall = time.perf_counter() - start
    for h in handles:
        if h.error is not None:
            raise h.error
    done = [i for i, h in enumerate(handles) if h.done and h.result is not None]
    tokens = engine.stats().tokens_generated
    if cut:
        for h in handles:
            engine.cancel(h)
    ids = [handles[i].result.ids for i in done]  # type: ignore[union-attr]
    return _figures(wall, [audio[i] for i in done], tokens, device) | {
        "clips": len(done), "clips_asked": len(audio), "max_rows": rows, "cut_short": cut, "_ids": ids,
        "_done": done}


def _figures(wall: float, audio, tokens: int, device: torch.device) -> dict:
    audio_s = sum(len(a) for a in audio) / common.SR
    return {"wall_s": wall, "audio_s": audio_s, "rtfx": audio_s / wall if wall > 0 else 0.0,
            "tokens": tokens, "tokens_per_s": tokens / wall if wall > 0 else 0.0, **peak_memory(device)}


def tests_phase(device: torch.device, timeout: float) -> dict:
    env = {**os.environ, "NUE_TEST_DEVICE": str(device), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *DEVICE_TESTS]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        tail = (exc.stdout or b"")[-2000:]
        tail = tail.decode(errors="replace") if isinstance(tail, bytes) else tail
        return {"status": "cut short", "timeout_s": timeout, "wall_s": time.perf_counter() - start, "tail": tail}
    out = proc.stdout + proc.stderr
    counts = {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|errors?|skipped)", out)}
    failed = counts.get("failed", 0) + counts.get("error", 0) + counts.get("errors", 0)
    return {"passed": counts.get("passed", 0), "failed": failed, "skipped": counts.get("skipped", 0),
            "returncode": proc.returncode, "wall_s": time.perf_counter() - start,
            "tests": DEVICE_TESTS, "tail": "\n".join(out.strip().splitlines()[-15:])}


# ------------------------------------------------------------------ driver


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny random model, few short clips (seconds on a CPU)")
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"],
                        help="default: bfloat16 on CUDA, float32 on a CPU")
    parser.add_argument("--clips", type=int, default=None, help="clips of 5-10 s (default 64; smoke: 6 of 1-2 s)")
    parser.add_argument("--new-tokens", type=int, default=None, help="max new tokens per clip (default 24; smoke 6)")
    parser.add_argument("--budget-s", type=float, default=270.0, help="global time budget (default 270 s)")
    parser.add_argument("--skip-tests", action="store_true", help="skip the device-placement tests")
    parser.add_argument("--json", type=Path, default=None, help="also write the JSON summary here")
    args = parser.parse_args(argv)
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    args.dtype = args.dtype or ("bfloat16" if args.device.startswith("cuda") else "float32")
    args.clips = args.clips or (6 if args.smoke else 64)
    args.new_tokens = args.new_tokens or (6 if args.smoke else 24)
    return args


def main(argv: list[str] | None = None) -> tuple[int, dict]:
    """Runs the check; returns (exit status, summary). Restores grad mode (tests call it in-process)."""
    with torch.no_grad():
        return _run(parse(argv))


def _run(args: argparse.Namespace) -> tuple[int, dict]:
    clock = Clock(args.budget_s)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    summary: dict = {"config": {"smoke": args.smoke, "device": str(device), "dtype": args.dtype, "clips": args.clips,
                                "new_tokens": args.new_tokens, "budget_s": args.budget_s,
                                "engine_rows": list(ENGINE_ROWS)},
                     "phases": {}, "skipped": []}
    phases = summary["phases"]
    failed = False

    def skip(name: str, why: str) -> None:
        phases[name] = {"status": "skipped", "why": why}
        summary["skipped"].append(name)
        log(f"[{name}] skipped: {why}")

    def fail(name: str, exc: BaseException) -> None:
        nonlocal failed
        failed = True
        phases[name] = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"[:2000]}
        log(f"[{name}] FAILED: {type(exc).__name__}: {exc}")
        traceback.print_exc(limit=4)
        if device.type == "cuda":
            torch.cuda.empty_cache()

    def budget_left(name: str) -> bool:
        if clock.left() < MIN_START_S:
            skip(name, f"time budget spent ({clock.elapsed():.0f} s of {args.budget_s:g} s)")
            return False
        return True

    # Phase 0: machine (always; it takes no time).
    if device.type == "cuda" and not torch.cuda.is_available():
        info = {"device": str(device), "error": "CUDA is not available"}
        phases["machine"] = {"status": "failed", **info}
        log(f"[machine] FAILED: --device {device} but CUDA is not available")
        failed = True
        for name in PHASES[1:]:
            skip(name, "no device")
        return _finish(summary, args, failed, clock)
    info = machine(device)
    phases["machine"] = {"status": "done", **info}
    log("[machine] " + ", ".join(f"{k} {v}" for k, v in info.items()))

    # Phase 1: build + warm-up.
    model = None
    cfg = GenerationConfig(max_new_tokens=args.new_tokens, repetition_limit=0)
    audio: list[np.ndarray] = []
    if budget_left("build"):
        try:
            model, built = build(args.smoke, device, dtype)
            audio = make_clips(args.clips, args.smoke, seed=7)
            start = time.perf_counter()
            released_decode(model, audio[0][: common.SR], 2)
            engine_phase(model, [audio[0][: common.SR], audio[1 % len(audio)][: common.SR // 2]],
                         GenerationConfig(max_new_tokens=2, repetition_limit=0), 2, float("inf"), device)
            sync(device)
            built["warmup_s"] = time.perf_counter() - start
            phases["build"] = {"status": "done", **built, "dtype": args.dtype, **peak_memory(device),
                               "clips_audio_s": sum(len(a) for a in audio) / common.SR}
            log(f"[build] {built['model']}: {built['parameters_b']:.3f} B parameters, {args.dtype} on {device}, "
                f"built in {built['build_s']:.1f} s, warm-up {built['warmup_s']:.1f} s; "
                f"{len(audio)} clips, {phases['build']['clips_audio_s']:.1f} s of audio")
        except Exception as exc:  # noqa: BLE001
            fail("build", exc)
            model = None

    # Phase 2: decoding.
    reserve = 0.0 if args.skip_tests else min(TESTS_RESERVE_S, args.budget_s / 4)
    reference: list[list[int]] = []
    for name in PHASES[2:-1]:
        if model is None:
            skip(name, "no model (build skipped or failed)")
            continue
        if not budget_left(name):
            continue
        reset_peak(device)
        try:
            if name == "released_b1":
                until = time.perf_counter() + min(RELEASED_SHARE * args.budget_s, clock.left() - reserve)
                r = released_phase(model, audio, cfg, until, device)
                reference = r.pop("_ids")
                log(f"[{name}] released path (HF generate), batch 1: {_line(r)}")
            else:
                rows = int(name.split("_b")[1])
                remaining = [n for n in PHASES[2:-1] if n not in phases and n != name]
                share = (clock.left() - reserve) / (1 + len(remaining))
                r = engine_phase(model, audio, cfg, rows, time.perf_counter() + max(share, MIN_START_S), device)
                ids, done = r.pop("_ids"), r.pop("_done")
                by_clip = dict(zip(done, ids))
                shared = [i for i in range(len(reference)) if i in by_clip]
                ref_ids, new_ids = [reference[i] for i in shared], [by_clip[i] for i in shared]
                r.update(shared_clips=len(shared), identical=(ref_ids == new_ids) if shared else None,
                         agreement=common.agreement(ref_ids, new_ids))
                log(f"[{name}] engine, max_rows {rows}: {_line(r)}; vs released on {len(shared)} clips: "
                    f"identical {r['identical']}, token agreement {100 * r['agreement']:.1f} %")
            phases[name] = {"status": "cut short" if r["cut_short"] else "done", **r}
        except Exception as exc:  # noqa: BLE001 - e.g. out of memory at 64 rows: the other phases still run
            fail(name, exc)

    # Phase 3: device-placement tests.
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    if args.skip_tests:
        skip("tests", "--skip-tests")
    elif budget_left("tests"):
        try:
            r = tests_phase(device, max(clock.left(), MIN_START_S))
            status = r.pop("status", "done")
            phases["tests"] = {"status": status, **r}
            if status == "cut short":
                log(f"[tests] cut short by the budget after {r['wall_s']:.0f} s")
            else:
                failed = failed or r["failed"] > 0 or r["returncode"] not in (0, 5)
                log(f"[tests] {' '.join(DEVICE_TESTS)} on {device}: {r['passed']} passed, {r['failed']} failed, "
                    f"{r['skipped']} skipped in {r['wall_s']:.0f} s")
                if r["failed"] or r["returncode"] not in (0, 5):
                    log(r["tail"])
        except Exception as exc:  # noqa: BLE001
            fail("tests", exc)
    return _finish(summary, args, failed, clock)


def _line(r: dict) -> str:
    cut = " (CUT SHORT by the budget)" if r.get("cut_short") else ""
    return (f"{r['clips']} clips, {r['audio_s']:.1f} s audio in {r['wall_s']:.2f} s -> RTFx {r['rtfx']:.1f}, "
            f"{r['tokens']} tokens, {r['tokens_per_s']:.1f} tokens/s, "
            f"peak {r['peak_gb']:.2f} GB ({r['peak_kind']}){cut}")


def _finish(summary: dict, args: argparse.Namespace, failed: bool, clock: Clock) -> tuple[int, dict]:
    summary["elapsed_s"] = clock.elapsed()
    summary["ok"] = not failed
    phases = summary["phases"]
    log(f"\n== GPU check summary: {phases.get('machine', {}).get('name', '?')}, {args.dtype}, "
        f"{summary['elapsed_s']:.0f} s of {args.budget_s:g} s ==")
    log(f"{'phase':<12} {'status':<10} {'clips':>5} {'audio s':>8} {'wall s':>8} {'RTFx':>8} {'tok/s':>9} "
        f"{'peak GB':>8} {'agree %':>8}")
    for name in PHASES:
        p = phases.get(name, {"status": "-"})
        if "rtfx" in p:
            agree = f"{100 * p['agreement']:.1f}" if "agreement" in p and p.get("shared_clips") else "-"
            log(f"{name:<12} {p['status']:<10} {p['clips']:>5} {p['audio_s']:>8.1f} {p['wall_s']:>8.2f} "
                f"{p['rtfx']:>8.1f} {p['tokens_per_s']:>9.1f} {p['peak_gb']:>8.2f} {agree:>8}")
        elif name == "build" and "build_s" in p:
            log(f"{name:<12} {p['status']:<10} {p['parameters_b']:.3f} B parameters, built {p['build_s']:.1f} s, "
                f"warm-up {p['warmup_s']:.1f} s, peak {p['peak_gb']:.2f} GB")
        elif name == "machine" and "name" in p:
            log(f"{name:<12} {p['status']:<10} {p['name']} ({p['device']}), torch {p['torch']}, CUDA {p['cuda']}")
        elif name == "tests" and "passed" in p:
            log(f"{name:<12} {p['status']:<10} {p['passed']} passed, {p['failed']} failed, {p['skipped']} skipped")
        else:
            log(f"{name:<12} {p['status']:<10} {p.get('why', p.get('error', ''))}")
    line = json.dumps(summary, default=str)
    if args.json is not None:
        try:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(line + "\n")
        except OSError as exc:
            log(f"could not write {args.json}: {exc}")
    log("GPU_CHECK_JSON " + line)
    return (1 if failed else 0), summary


if __name__ == "__main__":
    sys.exit(main()[0])
