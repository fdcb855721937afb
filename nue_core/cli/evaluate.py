"""``nue evaluate MODEL MANIFEST``: CER / WER (jiwer) with language-aware normalisation, and speed.

With ``--timestamps`` the model also gives word times (it needs a CTC head), and the words of
manifest entries that carry true word times (JSONL ``words``) are scored: among correctly
recognised words, the share whose predicted midpoint lies inside the true span and the mean
absolute start and end errors (``nue_core.timing_metrics``), per utterance and overall.

Writes ``results.jsonl`` (one line per utterance, as each is decoded, through
``results.jsonl.partial``) and ``summary.json`` into ``--output DIR``, which is checked before
decoding; each file replaces a previous one only once complete. An utterance whose audio cannot be
read is scored as an empty hypothesis (all deletions), named on stderr, and makes the exit status
1. Runs data-parallel under torchrun / accelerate launch.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

import typer

from nue_core.cli import _decode_options as opt
from nue_core.cli import app
from nue_core.cli._output import OldOut, check_output, pick_output
from nue_core.errors import NueError, writing

if TYPE_CHECKING:
    from nue_core.data.manifest import Utterance
    from nue_core.inference.transcriber import TranscriptionResult


@app.command()
def evaluate(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="model folder, preset name, 'default', a released Nue-ASR folder, or a Hugging Face repo id org/name"),
    manifest: Path = typer.Argument(..., help="JSONL manifest or Kaldi data folder with transcripts"),
    language: str = typer.Option("auto", "--language", "-l", help="ja | en | none | auto (detect from references)"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="folder for results.jsonl and summary.json"),
    old_out: OldOut = None,
    batch_size: opt.BatchSize = 16,
    num_beams: opt.NumBeams = 1,
    ctc_weight: opt.CTCWeight = None,
    max_new_tokens: opt.MaxNewTokens = None,
    repetition_limit: opt.RepetitionLimit = None,
    device: opt.Device = None,
    dtype: opt.DType = "auto",
    quantize: opt.Quantize = None,
    progress: opt.Progress = True,
    timestamps: bool = typer.Option(False, "--timestamps", help="also score word timing against the manifest's 'words' (needs a model with a CTC head)"),
) -> None:
    """Score a model on a manifest: CER, WER, real-time factor (and word timing with --timestamps)."""
    from nue_core.inference.distributed import dist_info
    from nue_core.cli._run_report import exit_on_failures, progress_bar
    from nue_core.inference.runner import RunOptions, run_transcription
    from nue_core.inference.sources import read_entries
    from nue_core.inference.writers import write_atomic
    from nue_core.metrics import resolve_language

    out = pick_output(ctx, output, old_out)
    if out is not None:  # found now, not after decoding
        check_output(out, folder=True)
    options = RunOptions(batch_size, num_beams, device, dtype, progress, max_new_tokens, ctc_weight, repetition_limit,
                         timestamps="word" if timestamps else None, quantize=quantize)
    entries = read_entries(manifest, require_text=True)
    if not entries:
        raise NueError(f"{manifest}: no utterances")
    if timestamps and not any(getattr(e, "words", None) for e in entries):
        raise typer.BadParameter(f"{manifest} gives no word times: add 'words' [{{word, start, end}}] to its "
                                 "entries (JSONL) to score timing", param_hint="'--timestamps'")
    try:
        lang = resolve_language(language, [e.text for e in entries])
    except ValueError as exc:
        raise NueError(str(exc)) from None
    start = time.perf_counter()
    parts = out / "results.jsonl" if out else None
    if out is None or not dist_info().is_main:  # nothing to write here (other ranks: rank 0 writes)
        results = run_transcription(model, entries, options, parts, on_precision=opt.report_precision, progress_bar=progress_bar)
    else:
        with writing(out):
            out.mkdir(parents=True, exist_ok=True)
        with ResultRows(out / "results.jsonl", entries, lang) as rows:
            results = run_transcription(model, entries, options, parts, on_precision=opt.report_precision,
                                        on_result=rows.add, progress_bar=progress_bar)
    if results is None:  # a data-parallel rank other than 0
        return
    wall = time.perf_counter() - start
    summary = summarize([e.text for e in entries], results, lang, wall)
    if timestamps:
        summary["timing"] = timing_summary(entries, results, lang)
    summary.update({"model": model, "manifest": str(manifest), "num_beams": num_beams, "ctc_weight": ctc_weight,
                    "repetition_limit": repetition_limit, "batch_size": batch_size})
    if out is not None:
        write_atomic(out / "summary.json", json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    _print_summary(summary)
    exit_on_failures(results, "{failed} utterance(s) failed (scored as empty):")


def timing_summary(entries: Sequence[Utterance], results: Sequence[TranscriptionResult], language: str) -> dict[str, Any]:
    """Word timing error over the entries that carry word times (``nue_core.timing_metrics``)."""
    from dataclasses import asdict

    from nue_core.timing_metrics import matched_pairs, timing_scores

    pairs, total = [], 0
    for entry, result in zip(entries, results):
        if entry.words:
            total += len(entry.words)
            pairs += matched_pairs(entry.words, result.words or [], language)
    return asdict(timing_scores(pairs, total))


def summarize(references: Sequence[str], results: Sequence, language: str, wall_seconds: float) -> dict:
    """Corpus scores and speed: cer, wer, edit counts, rtf (decode seconds per audio second)."""
    from nue_core.metrics import error_rates

    scores = error_rates(references, [r.text for r in results], language)
    audio = sum(r.seconds for r in results)
    busy = sum(r.elapsed for r in results)
    scores.update({
        "audio_seconds": audio,
        "decode_seconds": busy,
        "wall_seconds": wall_seconds,  # includes loading the model
        "rtf": busy / audio if audio else None,
        "failed": sum(not r.ok for r in results),
    })
    return scores


class ResultRows:
    """``results.jsonl`` rows (per utterance, with normalised-text error rates) written as results come.

    A context manager over ``LineFile``: the file replaces a previous ``results.jsonl`` only when
    complete; a run that stops early keeps its rows in ``results.jsonl.partial``.
    """

    def __init__(self, path: Path, entries: Sequence[Utterance], language: str) -> None:
        from nue_core.inference.writers import LineFile

        self.entries, self.language = entries, language
        self.file = LineFile(path)

    def add(self, index: int, result: TranscriptionResult) -> None:
        """Write the row of utterance ``index`` (``result``: its ``TranscriptionResult``)."""
        self.file.write(json.dumps(result_row(self.entries[index], result, self.language), ensure_ascii=False) + "\n")

    def __enter__(self) -> ResultRows:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.file.__exit__(*exc_info)


def result_row(entry: Utterance, result: TranscriptionResult, language: str) -> dict[str, Any]:
    """One ``results.jsonl`` row: the manifest entry, its hypothesis, error rates and timings."""
    from nue_core.metrics import utterance_rates

    cer, wer = utterance_rates(entry.text, result.text, language)
    row = {"id": entry.id, "audio": str(entry.audio), "ref": entry.text, "hyp": result.text, "cer": cer,
           "wer": wer, "seconds": result.seconds, "elapsed": result.elapsed, "error": result.error}
    if entry.words and result.words is not None:
        from dataclasses import asdict

        from nue_core.timing_metrics import matched_pairs, timing_scores

        scores = timing_scores(matched_pairs(entry.words, result.words, language), len(entry.words))
        row["timing"] = asdict(scores)
        row["words"] = [{"word": w.word, "start": w.start, "end": w.end} for w in result.words]
    return row


def _print_summary(summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"nue evaluate ({summary['language']})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    rows = [("utterances", str(summary["utterances"])), ("failed", str(summary["failed"])),
            ("CER", f"{100 * summary['cer']:.2f} %"), ("WER", f"{100 * summary['wer']:.2f} %"),
            ("audio", f"{summary['audio_seconds']:.1f} s"),
            ("RTF", "n/a" if summary["rtf"] is None else f"{summary['rtf']:.4f}")]
    timing = summary.get("timing")
    if timing is not None:
        rows.append(("timed words", f"{timing['matched_words']} of {timing['reference_words']} matched"))
        if timing["matched_words"]:
            rows += [("midpoint in span", f"{100 * timing['midpoint_inside']:.1f} %"),
                     ("|start error|", f"{1000 * timing['mean_abs_start']:.0f} ms"),
                     ("|end error|", f"{1000 * timing['mean_abs_end']:.0f} ms")]
    for name, value in rows:
        table.add_row(name, value)
    Console().print(table)
