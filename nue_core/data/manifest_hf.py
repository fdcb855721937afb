"""Hugging Face ``datasets`` audio datasets saved with ``save_to_disk``, read as manifests.

A folder holding ``dataset_info.json`` and ``state.json`` is read with ``datasets.load_from_disk``
(memory-mapped Arrow files: nothing is loaded but the columns asked for). Each row is an utterance:

* audio: the one column whose feature is ``Audio``; it is read with ``Audio(decode=False)`` (the
  encoded bytes, or a file path when the row holds no bytes) and decoded by nue's own audio code
  (``datasets`` 4+ decodes with torchcodec, which needs a torch build of its own);
* text: the first of the columns ``text``, ``sentence``, ``transcription`` that exists;
* id: the ``id`` column when there is one, else ``FOLDER[ROW]``; ``speaker`` and ``duration``
  columns are used when present. Problems name ``FOLDER[ROW]`` (rows counted from 0).

Rows are read lazily, by index, in whichever process asks (``row_audio``): each process opens the
dataset once, so the entries stay small and picklable for data-loader workers. A ``DatasetDict``
folder (``dataset_dict.json``) is refused with the split folders to give instead.

Needs the optional extra ``datasets`` (``pip install "nue-asr[datasets]"``).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from nue_core.data.manifest_base import DatasetRow, ManifestError, ManifestProblem, ManifestRead, Utterance, text_problem

TEXT_COLUMNS = ("text", "sentence", "transcription")


def is_saved_dataset(folder: Path) -> bool:
    """Whether ``folder`` was written by ``Dataset.save_to_disk`` or ``DatasetDict.save_to_disk``."""
    return ((folder / "dataset_info.json").is_file() and (folder / "state.json").is_file()) or (
        folder / "dataset_dict.json").is_file()


def scan_hf_dataset(folder: Path, require_text: bool = True) -> ManifestRead:
    """Every row of a saved dataset, as an entry or as a problem (``FOLDER[ROW]`` and the column).

    Raises:
        ManifestError: ``datasets`` is missing, the folder is a DatasetDict or cannot be loaded, or
            it has no audio column (or no text column while ``require_text``).
    """
    if (folder / "dataset_dict.json").is_file():
        splits = sorted(p.name for p in folder.iterdir() if p.is_dir())
        raise ManifestError(f"{folder}: a DatasetDict (splits: {', '.join(splits) or 'none'}); give one split's "
                            f"folder, e.g. {folder / (splits[0] if splits else 'train')}")
    dataset = _load(str(folder))
    audio = audio_column(dataset, folder)
    names = dataset.column_names
    text = next((c for c in TEXT_COLUMNS if c in names), None)
    if text is None and require_text:
        raise ManifestError(f"{folder}: no transcript column; name it one of {', '.join(TEXT_COLUMNS)} "
                            f"(columns: {', '.join(names)})")
    # save_to_disk writes the rows in order (no indices mapping), so the Arrow columns are the rows.
    column = {c: dataset.data.column(c).to_pylist() for c in ("id", "speaker", "duration") if c in names}
    texts = dataset.data.column(text).to_pylist() if text else [""] * len(dataset)
    read, seen, where_folder = ManifestRead(), set(), folder.resolve()
    for row, transcript in enumerate(texts):
        where = f"{folder}[{row}]"
        problem, entry = _row_entry(row, where, transcript, text, column, where_folder, audio)
        if problem is None and entry is not None and entry.id in seen:
            problem = f"duplicate id '{entry.id}'"
        if problem is not None or entry is None:
            read.problems.append(ManifestProblem(where, str(problem)))
            continue
        seen.add(entry.id)
        read.entries.append(entry)
    return read


def _row_entry(row: int, where: str, transcript: Any, text: str | None, column: dict[str, list],
               folder: Path, audio: str) -> tuple[str | None, Utterance | None]:
    """(problem, None) or (None, the entry) for one row."""
    if transcript is None:
        transcript = ""
    if not isinstance(transcript, str):
        return f"'{text}' must be a string", None
    fields: dict[str, Any] = {"text": transcript}
    for key in ("id", "speaker"):
        value = column[key][row] if key in column else None
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if value is not None and (not isinstance(value, str) or not value):
            return f"'{key}' must be a non-empty string or an integer", None
        fields[key] = value
    for key in ("text", "id", "speaker"):
        bad = text_problem(fields[key], f"'{text if key == 'text' else key}'") if fields[key] else None
        if bad:
            return bad, None
    duration = column["duration"][row] if "duration" in column else None
    if duration is not None and (isinstance(duration, bool) or not isinstance(duration, (int, float))
                                 or not 0 <= duration < float("inf")):
        return "'duration' must be a finite, non-negative number of seconds", None
    return None, Utterance(id=fields["id"] or where, audio=folder, text=fields["text"], speaker=fields["speaker"],
                           duration=None if duration is None else float(duration), source=where,
                           container=DatasetRow(row, audio))


def audio_column(dataset: Any, folder: Path) -> str:
    """The one column whose feature is ``datasets.Audio``; ManifestError naming the columns otherwise."""
    from datasets import Audio

    found = [name for name, feature in dataset.features.items() if isinstance(feature, Audio)]
    if len(found) == 1:
        return found[0]
    if "audio" in found:
        return "audio"
    raise ManifestError(f"{folder}: {'no' if not found else 'several'} audio columns ({', '.join(found) or 'none'}); "
                        f"nue reads one column of feature datasets.Audio (columns: {', '.join(dataset.column_names)})")


def row_audio(folder: Path, row: DatasetRow) -> bytes | Path:
    """The encoded audio of one row (its bytes), or the path of the file the row names.

    Opens the dataset on first use in each process (``_audio_view``). A relative path is relative
    to the dataset's folder.

    Raises:
        ManifestError: the dataset cannot be loaded. IndexError: no such row. ValueError: the row holds no audio.
    """
    value = _audio_view(str(folder), row.column)[row.index][row.column]
    data = value.get("bytes") if isinstance(value, dict) else None
    if data:
        return bytes(data)
    path = value.get("path") if isinstance(value, dict) else None
    if not path:
        raise ValueError(f"row {row.index} has neither audio bytes nor a path in column '{row.column}'")
    return Path(folder, path)


@functools.lru_cache(maxsize=16)
def _audio_view(folder: str, column: str) -> Any:
    """The dataset's audio column with decoding off, opened once per process (memory-mapped)."""
    from datasets import Audio

    return _load(folder).select_columns([column]).cast_column(column, Audio(decode=False))


def _load(folder: str) -> Any:
    try:
        import datasets
    except ImportError as exc:
        raise ManifestError(f"{folder} is a saved Hugging Face dataset, and datasets cannot be imported ({exc}); "
                            "install the extra: pip install \"nue-asr[datasets]\"") from None
    try:
        return datasets.load_from_disk(folder)
    except (OSError, ValueError, KeyError, TypeError) as exc:  # FileNotFoundError, a damaged state.json ...
        raise ManifestError(f"{folder}: cannot load the saved dataset ({type(exc).__name__}: {exc})") from None
