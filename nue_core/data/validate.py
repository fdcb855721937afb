"""Check every manifest entry once before training: a bad file should stop a run at step 0, not 3.

Each entry is checked for a missing or unreadable audio file, an empty transcript and audio
longer than the limit. Problems are reported with the manifest ``file:line`` the entry came from.

How much of each file is read is a choice of cost (``TrainConfig.check_audio``):

* quick (default): the header and the first and last frames of the clip (a corrupt start, a
  truncated end, NaN samples there). A few reads per file, whatever its length.
* full (``decode_rate``): the clip is decoded and resampled exactly as training will read it, so
  NaN samples anywhere and a stream that breaks midway are found too. This reads the whole corpus
  once before the first step: about 15 min of one CPU core per 1,000 hours of 16 kHz FLAC
  (measured ~4,000x real time; WAV ~3x faster), plus the time to read the bytes from disk.
  A million files on network storage can make that hours.
* none (``probe=False``): an entry whose manifest gives its duration (JSONL/NeMo ``duration``,
  Kaldi segments, lhotse cuts, a tar sample's JSON) is not opened at all: only its transcript and
  the length limit are checked, so a million-line manifest is checked in seconds. Entries without
  a duration are still measured from their header (quick): batching needs every length.

The quick check costs 0.25-1.2 ms of CPU per file when the file is in the page cache (measured on
2 shared cores: ``benchmarks/manifest_scale.py``), 4-20 minutes per million files before any
network latency; none checks a million entries with durations in seconds.

Whichever is chosen, an item found unreadable during training does not crash the run
(``nue_core.train.data``): it stops it in one line naming the entry, or is skipped under --skip-bad.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import numpy as np

from nue_core.data.manifest import ManifestProblem, Utterance
from nue_core.errors import NueError


class DataError(NueError):
    """Training data cannot be used as given; the message lists each bad entry."""


# One bad entry (``file:line`` and what is wrong): the same record a bad manifest line makes.
Problem = ManifestProblem


@dataclass
class ValidationReport:
    """Entries that passed (with their measured duration filled in) and the problems found."""

    good: list[Utterance] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self, name: str = "manifest", limit: int = 50) -> str:
        """Multi-line report: a count, then one line per problem (at most ``limit``)."""
        lines = [f"{name}: {len(self.problems)} bad entr{'y' if len(self.problems) == 1 else 'ies'} "
                 f"of {len(self.good) + len(self.problems)}"]
        lines += [f"  {p}" for p in self.problems[:limit]]
        if len(self.problems) > limit:
            lines.append(f"  ... and {len(self.problems) - limit} more")
        return "\n".join(lines)


# Frames decoded at each end of a clip by the quick check.
_PROBE_FRAMES = 1024


def entry_duration(entry: Utterance, decode_rate: int | None = None) -> float:
    """Seconds of audio an entry covers (segment bounds, else the file header).

    Args:
        decode_rate: None: read the header and the first and last frames of the clip (quick).
            A sample rate: decode and resample the whole clip to it, as training will (full).

    Raises:
        AudioError: the file is missing, or what was read of it is unusable.
    """
    from nue_core.data.audio import AudioError, check_sample_rate
    from nue_core.data.entry_audio import audio_name, open_entry_audio, read_entry_audio

    name = audio_name(entry)
    with open_entry_audio(entry) as handle:
        frames, rate = handle.frames, handle.samplerate
        check_sample_rate(rate, name)
        if decode_rate is None:
            _probe_ends(handle, entry)
    if frames == 0:
        raise AudioError(f"audio file is empty: {name}")
    total = frames / float(rate)
    seconds = total
    if entry.start is not None:
        end = entry.end if entry.end is not None else total
        if entry.start >= end or entry.start >= total:
            raise AudioError(f"segment {entry.start:.2f}-{end:.2f} s is outside {name} ({total:.2f} s)")
        seconds = min(end, total) - entry.start
    if decode_rate is not None:
        read_entry_audio(entry, decode_rate)  # the very read training makes
    return seconds


def _probe_ends(handle: Any, entry: Utterance) -> None:
    """Decode the first and last frames of the entry's clip; NaN or infinite samples there are an error.

    The header alone misses a corrupt body; the two ends catch a damaged start and a truncated tail.
    """
    from nue_core.data.audio import AudioError
    from nue_core.data.entry_audio import audio_name

    rate, frames = handle.samplerate, handle.frames
    first = min(int(round((entry.start or 0.0) * rate)), frames)
    last = min(int(round(entry.end * rate)), frames) if entry.end is not None else frames
    for at in sorted({first, max(first, last - _PROBE_FRAMES)}):
        handle.seek(at)
        block = handle.read(min(_PROBE_FRAMES, max(last - at, 0)), dtype="float32")
        if not np.isfinite(block).all():
            raise AudioError(f"{audio_name(entry)}: audio contains NaN or infinite samples")


def check_entry(
    entry: Utterance, max_seconds: float | None, decode_rate: int | None = None, probe: bool = True
) -> tuple[Utterance | None, str | None]:
    """(entry with duration set, None) when usable, else (None, what is wrong).

    Args:
        decode_rate: decode the whole clip at this rate (see ``entry_duration``); None: quick check.
        probe: False: an entry whose duration is known is not opened (``check_audio: none``).
    """
    from nue_core.data.audio import AudioError

    if not entry.text.strip():
        return None, "empty transcript"
    if not probe and entry.duration is not None:
        if max_seconds is not None and entry.duration > max_seconds:
            return None, (f"audio is {entry.duration:.2f} s (manifest duration), longer than the limit of "
                          f"{max_seconds:g} s ({entry.audio})")
        return entry, None
    try:
        seconds = entry_duration(entry, decode_rate)
    except AudioError as exc:
        return None, str(exc)
    if max_seconds is not None and seconds > max_seconds:
        return None, f"audio is {seconds:.2f} s, longer than the limit of {max_seconds:g} s ({entry.audio})"
    return replace(entry, duration=seconds), None


def validate_entries(
    entries: list[Utterance], max_seconds: float | None = 16.0, decode_rate: int | None = None, probe: bool = True
) -> ValidationReport:
    """Check every entry; never raises for a bad entry (see ``ValidationReport``, ``check_entry``)."""
    report = ValidationReport()
    for entry in entries:
        good, problem = check_entry(entry, max_seconds, decode_rate, probe)
        if good is not None:
            report.good.append(good)
        else:
            report.problems.append(Problem(entry.source or entry.id, str(problem)))
    return report


def checked_entries(
    entries: list[Utterance], name: str, max_seconds: float | None = 16.0, skip_bad: bool = False,
    unread: Sequence[ManifestProblem] = (), decode_rate: int | None = None, probe: bool = True,
) -> tuple[list[Utterance], ValidationReport]:
    """The usable entries of a manifest, or a ``DataError`` naming every bad line.

    Args:
        entries: as read by ``read_manifest``.
        name: the manifest's name for messages (its path).
        max_seconds: longest clip allowed (the paper left out clips over 16 s); None: no limit.
        skip_bad: drop bad entries (they are counted in the report) instead of stopping.
        unread: the manifest's bad lines met while reading it (``scan_manifest``): reported and
            skipped like bad entries.
        decode_rate: decode every file in full at this rate, as training will (see the module
            doc for the cost); None: the quick check.
        probe: False: entries whose duration the manifest gives are not opened (``check_audio: none``).
    """
    report = validate_entries(entries, max_seconds, decode_rate, probe)
    report.problems[:0] = list(unread)
    if report.problems and not skip_bad:
        raise DataError(report.summary(name) + "\nfix these entries, or pass --skip-bad to leave them out")
    if not report.good:
        raise DataError(f"{name}: no usable entries" + ("\n" + report.summary(name) if report.problems else ""))
    return report.good, report
