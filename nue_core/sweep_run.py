"""Run a sweep: train and evaluate each cell in its own folder, skip finished cells, write the table.

Layout of the output folder::

    OUT/cells/<cell>/model.yaml, run/ (the trainer's run folder), result.json (written last)
    OUT/results.md, OUT/results.csv, OUT/results.png
"""

from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path
from typing import Any, Callable

import torch
import yaml

from nue_core.errors import ConfigError
from nue_core.sweep import Cell, Sweep, expand, load_sweep

COLUMNS = ["cell", "cer", "wer", "params_total", "params_trainable", "prompt_tokens_per_second",
           "train_seconds", "rtf"]


def run_sweep(path: Path | str, out: Path | str, only: str | None = None, say: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Train + evaluate every unfinished cell (or just ``only``); returns all finished results."""
    sweep, root = load_sweep(path)
    cells = expand(sweep, root)
    if only is not None:
        names = [c.name for c in cells]
        if only not in names:
            raise ConfigError(f"no cell named '{only}'; cells: {', '.join(names)}")
        cells = [c for c in cells if c.name == only]
    out = Path(out)
    for cell in cells:
        folder = out / "cells" / cell.name
        if (folder / "result.json").is_file():
            say(f"[{cell.name}] finished earlier: skipped")
            continue
        say(f"[{cell.name}] training")
        result = run_cell(cell, sweep, root, folder)
        _write_json_atomic(folder / "result.json", result)
        say(f"[{cell.name}] CER {result['cer']:.3f}  WER {result['wer']:.3f}")
    results = collect_results(out, [c.name for c in expand(sweep, root)])
    write_tables(results, out, sweep.name)
    return results


def run_cell(cell: Cell, sweep: Sweep, root: Path, folder: Path) -> dict[str, Any]:
    """Train one cell (resuming its own run if interrupted) and evaluate the best model on the test set."""
    from nue_core.sweep import base_source
    from nue_core.train.run import train

    folder.mkdir(parents=True, exist_ok=True)
    cell.model_config.save(folder / "model.yaml")  # the resolved config, for the record
    # Train from the base as given plus this cell's overrides, so relative paths in the base
    # (e.g. a tokenizer beside its YAML) resolve against the base's own folder.
    source = base_source(sweep, root)
    if source is None:
        source = str(folder / "base.yaml")
        Path(source).write_text(yaml.safe_dump(sweep.base, sort_keys=False), encoding="utf-8")
    run_dir = folder / "run"
    started = time.perf_counter()
    outcome = train(source, root / sweep.data.train,
                    root / sweep.data.valid if sweep.data.valid else None, run_dir,
                    cell.train_config, resume=run_dir.exists(), model_overrides=cell.model_overrides,
                    say=lambda *_: None)
    train_seconds = time.perf_counter() - started
    model_dir = outcome.best_dir or outcome.final_dir
    if model_dir is None:
        raise ConfigError(f"sweep cell '{cell.name}': training ended ({outcome.status}) without a saved model")
    return {"cell": cell.name, "overrides": cell.overrides, "status": outcome.status,
            **evaluate_model(model_dir, root / sweep.data.test, sweep.language), "train_seconds": train_seconds}


def evaluate_model(model_dir: Path, manifest: Path, language: str | None) -> dict[str, Any]:
    """CER/WER, RTF, parameter counts and measured prompt tokens per second of a saved model."""
    from nue_core.checkpoint import load
    from nue_core.data.manifest import read_manifest
    from nue_core.inference import transcribe
    from nue_core.metrics import error_rates
    from nue_core.trainability import count_parameters

    model = load(model_dir)
    utterances = read_manifest(manifest)
    results = transcribe(model, utterances)
    failed = [r for r in results if not r.ok]
    if failed:
        raise ConfigError(f"{manifest}: {len(failed)} test item(s) failed, e.g. {failed[0].error}")
    rates = error_rates([u.text for u in utterances], [r.text for r in results], language)
    audio = sum(r.seconds for r in results)
    total, trainable = count_parameters(model)
    return {"cer": rates["cer"], "wer": rates["wer"], "rtf": sum(r.elapsed for r in results) / max(audio, 1e-9),
            # load() re-applies the config's trainability, so this counts what the cell trained
            "params_total": total, "params_trainable": trainable,
            "prompt_tokens_per_second": prompt_rate(model, utterances[:16])}


@torch.no_grad()
def prompt_rate(model: Any, utterances: list[Any]) -> float:
    """LLM prompt tokens (speech vectors + text prompt) per second of audio, measured on real clips."""
    from nue_core.data.entry_audio import read_entry_audio

    tokens = seconds = 0.0
    for utt in utterances:
        audio = torch.from_numpy(read_entry_audio(utt, model.sample_rate))[None]
        speech = model.encode_speech(audio, torch.tensor([audio.shape[1]]))
        tokens += int(speech.lengths[0]) + len(model.prefix_ids) + len(model.postfix_ids)
        seconds += audio.shape[1] / model.sample_rate
    return tokens / max(seconds, 1e-9)


def collect_results(out: Path, order: list[str]) -> list[dict[str, Any]]:
    """Finished cells' results, in sweep order."""
    results = []
    for name in order:
        path = out / "cells" / name / "result.json"
        if path.is_file():
            results.append(json.loads(path.read_text(encoding="utf-8")))
    return results


def write_tables(results: list[dict[str, Any]], out: Path, title: str) -> None:
    """results.csv, results.md and results.png (CER/WER per cell)."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "results.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(results)
    lines = [f"# {title}", "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in results:
        lines.append("| " + " | ".join(_fmt(row.get(c)) for c in COLUMNS) + " |")
    (out / "results.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    if results:
        _chart(results, out / "results.png", title)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, int) and value >= 10_000:
        return f"{value / 1e6:.2f}M"
    return str(value)


def _chart(results: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["cell"] for r in results]
    x = range(len(names))
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(names)), 4))
    ax.bar([i - 0.2 for i in x], [100 * r["cer"] for r in results], width=0.4, label="CER %")
    ax.bar([i + 0.2 for i in x], [100 * r["wer"] for r in results], width=0.4, label="WER %")
    ax.set_xticks(list(x), names, rotation=20, ha="right", fontsize=8)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
    os.replace(tmp, path)
