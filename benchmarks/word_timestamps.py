"""Word timestamp accuracy of the embedded default model on connected FSDD digits with known spans.

Builds ``--files`` seeded files of 2-6 digits of one speaker (``fsdd_timed.py``; default the
held-out speaker yweweler), transcribes them once with ``nue_core.transcribe(timestamps="word")``
(the default refinement, as users get it), then re-times the same transcripts under each
refinement setting with ``word_times(..., refine=...)``. Among correctly recognised words (the
hypothesis aligned to the reference by jiwer, chunks of type "equal") it reports: the share whose
predicted midpoint lies inside the true span, mean |start error|, mean |end error|, their mean
signed values (bias: + = late), and the WER.

    python benchmarks/word_timestamps.py [--speaker yweweler] [--files 200] [--seed 0] [--fsdd DIR] [--check]

``--speaker valid`` uses the recipe's validation recordings of the training speakers (index >= 45
of jackson, nicolas, theo): the set the refinement defaults were tuned on. ``--check`` exits 1 when
the default setting misses the acceptance thresholds (>= 95 % midpoints inside, both mean absolute
edge errors <= 80 ms).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import decode_common as common  # noqa: E402
from fsdd_timed import TRAIN_SPEAKERS, VALID_FROM, TimedFile, build, default_fsdd, recordings  # noqa: E402

MIN_INSIDE, MAX_EDGE_S = 0.95, 0.080
BATCH = 16


@dataclass(frozen=True)
class Score:
    """Timing of the correctly recognised words of a set, and its WER."""

    correct: int
    inside: float  # share of correct words whose predicted midpoint is inside the true span
    start_abs: float  # seconds
    end_abs: float
    start_bias: float  # mean signed (predicted - true), seconds
    end_bias: float
    wer: float

    def passes(self) -> bool:
        return self.inside >= MIN_INSIDE and self.start_abs <= MAX_EDGE_S and self.end_abs <= MAX_EDGE_S


def score(refs: list[tuple[list[str], list[tuple[float, float]]]], hyps: list[list[tuple[str, float, float]] | None]) -> Score:
    """Score hypotheses (word, start s, end s) against references (words, true spans), file by file.

    Timing comes from ``nue_core.timing_metrics`` (what ``nue evaluate --timestamps`` reports).
    A file whose words are None (not aligned) counts for the WER with its text taken as empty.
    """
    import jiwer

    from nue_core.data.manifest_base import ReferenceWord
    from nue_core.timing_metrics import matched_pairs, timing_scores

    pairs, total, ref_texts, hyp_texts = [], 0, [], []
    for (words, spans), hyp in zip(refs, hyps):
        hyp = hyp or []
        ref_texts.append(" ".join(words))
        hyp_texts.append(" ".join(h[0] for h in hyp))
        total += len(words)
        pairs += matched_pairs([ReferenceWord(w, a, b) for w, (a, b) in zip(words, spans)],
                               [ReferenceWord(w, a, b) for w, a, b in hyp], "en")
    wer = float(jiwer.wer([t or "<empty>" for t in ref_texts], [t or "" for t in hyp_texts])) if ref_texts else 0.0
    t = timing_scores(pairs, total)
    if not t.matched_words:
        return Score(0, 0.0, float("inf"), float("inf"), 0.0, 0.0, wer)
    return Score(t.matched_words, t.midpoint_inside, t.mean_abs_start, t.mean_abs_end,  # type: ignore[arg-type]
                 t.mean_start_bias, t.mean_end_bias, wer)  # type: ignore[arg-type]


def settings() -> dict[str, object]:
    """Refinement settings to compare: raw CTC spans, each refinement alone, all (the default)."""
    from nue_core.word_timing import RAW, Refinement

    return {
        "raw": RAW,
        "trim only": Refinement(extend_end=False, extend_start=False),
        "extend_end only (no evidence)": Refinement(extend_start=False, use_evidence=False, trim=False),
        "extend_end + evidence": Refinement(extend_start=False, trim=False),
        "extend_start (evidence)": Refinement(extend_end=False, trim=False),
        "all (default)": Refinement(),
    }


def retime(model: torch.nn.Module, files: list[TimedFile], texts: list[str], refine: object) -> list[list[tuple[str, float, float]] | None]:
    """Word times of the transcripts ``texts`` of ``files`` under ``refine`` (batches of BATCH)."""
    from nue_core.inference.timestamps import word_times

    out: list[list[tuple[str, float, float]] | None] = []
    for k in range(0, len(files), BATCH):
        group = files[k : k + BATCH]
        lengths = torch.tensor([f.audio.shape[0] for f in group])
        waves = torch.zeros(len(group), int(lengths.max()), dtype=model.input_dtype)
        for i, f in enumerate(group):
            waves[i, : f.audio.shape[0]] = torch.from_numpy(f.audio)
        ids = [model.tokenizer.encode(t) for t in texts[k : k + BATCH]]
        for words in word_times(model, waves.to(model.device), lengths.to(model.device), ids, refine=refine):  # type: ignore[arg-type]
            out.append(None if words is None else [(w.word, w.start, w.end) for w in words])
    return out


def load_files(speaker: str, count: int, seed: int, fsdd: Path) -> list[TimedFile]:
    if speaker == "valid":
        return build(recordings(fsdd, TRAIN_SPEAKERS, VALID_FROM), count, seed)
    return build(recordings(fsdd, (speaker,)), count, seed)


def run(files: list[TimedFile], model: torch.nn.Module | None = None) -> dict[str, Score]:
    """Score every refinement setting on ``files``; "all (default)" goes through ``nue_core.transcribe``."""
    import nue_core

    model = model if model is not None else nue_core.load("default")
    results = nue_core.transcribe(model, [f.audio for f in files], batch_size=BATCH, timestamps="word")
    refs = [(f.words, f.spans) for f in files]
    texts = [r.text if r.ok else "" for r in results]
    scores = {}
    for name, refine in settings().items():
        if name == "all (default)":
            hyps = [None if r.words is None else [(w.word, w.start, w.end) for w in r.words] for r in results]
        else:
            hyps = retime(model, files, texts, refine)
        scores[name] = score(refs, hyps)
    return scores


def table(scores: dict[str, Score]) -> str:
    ms = 1000.0
    lines = ["| setting | correct words | midpoint inside | mean abs start err | mean abs end err | start bias | end bias | WER |",
             "|---|---|---|---|---|---|---|---|"]
    for name, s in scores.items():
        lines.append(f"| {name} | {s.correct} | {100 * s.inside:.1f} % | {s.start_abs * ms:.0f} ms | {s.end_abs * ms:.0f} ms | "
                     f"{s.start_bias * ms:+.0f} ms | {s.end_bias * ms:+.0f} ms | {100 * s.wer:.1f} % |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Score]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--speaker", default="yweweler", help="FSDD speaker, or 'valid' (training speakers' validation recordings)")
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fsdd", type=Path, default=default_fsdd())
    parser.add_argument("--check", action="store_true", help="exit 1 when the default setting misses the thresholds")
    args = parser.parse_args(argv)
    print(common.machine_line())
    files = load_files(args.speaker, args.files, args.seed, args.fsdd)
    words = sum(len(f.words) for f in files)
    print(f"{len(files)} files, {words} words, {sum(f.audio.shape[0] for f in files) / 16000:.0f} s of audio, speaker {args.speaker}, seed {args.seed}")
    scores = run(files)
    print(table(scores))
    if args.check:
        default = scores["all (default)"]
        verdict = "PASS" if default.passes() else "FAIL"
        print(f"{verdict}: need >= {100 * MIN_INSIDE:.0f} % midpoints inside and mean abs start/end error <= {MAX_EDGE_S * 1000:.0f} ms")
        if not default.passes():
            raise SystemExit(1)
    return scores


if __name__ == "__main__":
    main()
