"""CTC prefix scoring: one ``CTCPrefixScorer.extend`` call (a decode step's joint CTC scoring),
the frame loop it used to run vs the vectorised recursion, in one run.

Rows 1 / 16 / 64 (hypothesis rows in the running batch), the default model's shapes (candidates
per row = ``GenerationConfig.ctc_candidates``, CTC classes = its decoder vocabulary + blank) and
70 / 400 CTC frames (1.4 s / 8 s of audio at the default model's 20 ms hop). The loop is the
reference implementation kept in ``tests/nue_core/test_ctc_prefix.py``. Logits are random but
peaky, like a trained head reading a transcript; the state is that of a 3-label prefix.

    python benchmarks/ctc_prefix_speed.py [--rows 1 16 64] [--frames 70 400] [--repeat N] [--smoke]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import decode_common as common  # noqa: E402

from nue_core.ctc_prefix import CTCPrefixScorer, CTCPrefixState  # noqa: E402
from nue_core.generation import GenerationConfig  # noqa: E402

REFERENCE = Path(__file__).resolve().parents[1] / "tests" / "nue_core" / "test_ctc_prefix.py"
VOCAB = 14  # the embedded default model's decoder vocabulary (nue_core/default_model/nue.yaml)


def _loop_extend() -> Callable:
    """The frame-loop ``extend`` from the test file (its one home)."""
    spec = importlib.util.spec_from_file_location("ctc_prefix_reference", REFERENCE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module._loop_extend


def _setup(rows: int, frames: int, candidates: int, seed: int = 0
           ) -> tuple[CTCPrefixScorer, CTCPrefixState, torch.Tensor]:
    """A scorer over ``rows`` clips of ``frames`` frames, the state after 3 labels, (r, c) candidates."""
    gen = torch.Generator().manual_seed(seed)
    blank = VOCAB
    path = torch.full((rows, frames), blank)
    slots = path[:, 3::6].shape[1]  # a label every 6 frames (120 ms), blanks between
    labels = torch.randint(0, VOCAB, (rows, max(slots, 3)), generator=gen)
    path[:, 3::6] = labels[:, :slots]
    logits = torch.randn(rows, frames, VOCAB + 1, generator=gen) + 12 * torch.nn.functional.one_hot(path, VOCAB + 1)
    scorer = CTCPrefixScorer(logits, torch.full((rows,), frames), blank, eos=2, weight=0.5, candidates=candidates)
    state = scorer.initial_state()
    every = torch.arange(rows)
    for step in range(3):
        token = labels[:, step: step + 1]
        state = CTCPrefixScorer.advance(state, (token, *scorer.extend(state, token)), every, token[:, 0])
    tokens = torch.stack([torch.randperm(VOCAB, generator=gen)[:candidates] for _ in range(rows)])
    return scorer, state, tokens


def _median_ms(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--frames", type=int, nargs="+", default=[70, 400])
    parser.add_argument("--repeat", type=int, default=15, help="timings per configuration (median printed)")
    parser.add_argument("--smoke", action="store_true", help="small shapes, 2 timings (for CI)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.rows, args.frames, args.repeat = [2], [24], 2
    candidates = GenerationConfig().ctc_candidates
    loop = _loop_extend()
    print(common.machine_line())
    print(f"extend of {candidates} candidates per row, {VOCAB + 1} CTC classes; median of {args.repeat} timings")
    print(f"{'rows':>5} {'frames':>6} {'loop ms':>9} {'vector ms':>10} {'speed-up':>9} {'max |diff|':>11}")
    results = {}
    with torch.inference_mode():
        for rows in args.rows:
            for frames in args.frames:
                scorer, state, tokens = _setup(rows, frames, candidates)
                slow = _median_ms(lambda: loop(scorer, state, tokens), args.repeat)
                fast = _median_ms(lambda: scorer.extend(state, tokens), args.repeat)
                diff = max(_finite_diff(a, b) for a, b in zip(scorer.extend(state, tokens), loop(scorer, state, tokens)))
                results[(rows, frames)] = {"loop_ms": slow, "vector_ms": fast, "max_diff": diff}
                print(f"{rows:>5} {frames:>6} {slow:>9.2f} {fast:>10.2f} {slow / fast:>8.1f}x {diff:>11.2e}")
    return results


def _finite_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| where both are finite (inf where only one of them is -inf)."""
    if not torch.equal(torch.isneginf(a), torch.isneginf(b)):
        return float("inf")
    finite = torch.isfinite(a)
    return float((a[finite] - b[finite]).abs().max()) if finite.any() else 0.0


if __name__ == "__main__":
    main()
