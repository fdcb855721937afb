"""Check every manifest entry once before training: a bad file should stop a run at step 0, not 3.

Each entry is checked for a missing or unreadable audio file (read from the header, plus a short
decode so a truncated or corrupt body is caught), an empty transcript and audio longer than the
limit. Problems are reported with the manifest ``file:line`` the entry came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from nue_core.data.manifest import Utterance
from nue_core.errors import NueError


class DataError(NueError):
    """Training data cannot be used as given; the message lists each bad entry."""


@dataclass
class Problem:
    """One bad entry: where it came from (``file:line``) and what is wrong."""

    source: str
    message: str

    def __str__(self) -> str:
        return f"{self.source}: {self.message}"


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


def entry_duration(entry: Utterance) -> float:
    """Seconds of audio an entry covers (segment bounds, else the file header).

    Raises:
        AudioError: the file is missing or its header cannot be read.
    """
    import soundfile as sf

    from nue_core.data.audio import AudioError

    if not Path(entry.audio).is_file():
        raise AudioError(f"audio file not found: {entry.audio}")
    try:
        info = sf.info(str(entry.audio))
        with sf.SoundFile(str(entry.audio)) as handle:
            # The header alone misses a corrupt body; decoding a few frames catches most of those.
            handle.read(min(handle.frames, 1024), dtype="float32")
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as exc:
        raise AudioError(f"cannot read audio {entry.audio} ({exc})") from None
    total = info.frames / float(info.samplerate)
    if info.frames == 0:
        raise AudioError(f"audio file is empty: {entry.audio}")
    if entry.start is not None:
        end = entry.end if entry.end is not None else total
        if entry.start >= end or entry.start >= total:
            raise AudioError(f"segment {entry.start:.2f}-{end:.2f} s is outside {entry.audio} ({total:.2f} s)")
        return min(end, total) - entry.start
    return total


def check_entry(entry: Utterance, max_seconds: float | None) -> tuple[Utterance | None, str | None]:
    """(entry with duration set, None) when usable, else (None, what is wrong)."""
    from nue_core.data.audio import AudioError

    if not entry.text.strip():
        return None, "empty transcript"
    try:
        seconds = entry_duration(entry)
    except AudioError as exc:
        return None, str(exc)
    if max_seconds is not None and seconds > max_seconds:
        return None, f"audio is {seconds:.2f} s, longer than the limit of {max_seconds:g} s ({entry.audio})"
    return replace(entry, duration=seconds), None


def validate_entries(entries: list[Utterance], max_seconds: float | None = 16.0) -> ValidationReport:
    """Check every entry; never raises for a bad entry (see ``ValidationReport``)."""
    report = ValidationReport()
    for entry in entries:
        good, problem = check_entry(entry, max_seconds)
        if good is not None:
            report.good.append(good)
        else:
            report.problems.append(Problem(entry.source or entry.id, str(problem)))
    return report


def checked_entries(
    entries: list[Utterance], name: str, max_seconds: float | None = 16.0, skip_bad: bool = False
) -> tuple[list[Utterance], ValidationReport]:
    """The usable entries of a manifest, or a ``DataError`` naming every bad line.

    Args:
        entries: as read by ``read_manifest``.
        name: the manifest's name for messages (its path).
        max_seconds: longest clip allowed (the paper left out clips over 16 s); None: no limit.
        skip_bad: drop bad entries (they are counted in the report) instead of stopping.
    """
    report = validate_entries(entries, max_seconds)
    if report.problems and not skip_bad:
        raise DataError(report.summary(name) + "\nfix these entries, or pass --skip-bad to leave them out")
    if not report.good:
        raise DataError(f"{name}: no usable entries" + ("\n" + report.summary(name) if report.problems else ""))
    return report.good, report
