"""Training data: validated utterances, their audio (optionally cached) and padded batches.

The pre-flight check (``nue_core.data.validate``) reads each file's header and its first and last
frames by default, not all of it: a file can still turn out unreadable when training decodes it
(NaN samples in the middle, a FLAC stream that loses sync). Such an item is an
``UnreadableItemError`` naming its manifest line, or, with ``skip_bad``, left out of its batch and
recorded in ``unreadable``; never a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from nue_core.data.audio import AudioError
from nue_core.data.augment import AugmentConfig, augment
from nue_core.data.batching import AudioBatch, pad_waveforms
from nue_core.data.entry_audio import read_entry_audio
from nue_core.data.manifest import Utterance, manifest_paths, scan_manifests
from nue_core.data.manifest_base import TarMember
from nue_core.data.validate import DataError, ValidationReport, checked_entries


class UnreadableItemError(DataError):
    """An item's audio could not be read during training; the message names its manifest line."""


class UtteranceSet:
    """Validated manifest entries and a loader for their audio.

    Args:
        entries: entries with ``duration`` filled in (see ``checked_entries``).
        sample_rate: the encoder's rate; audio is resampled to it.
        cache: keep decoded audio in memory after the first read.
        skip_bad: leave an item whose audio cannot be read out of its batch (recorded in
            ``unreadable``) instead of raising ``UnreadableItemError``.
    """

    def __init__(self, entries: list[Utterance], sample_rate: int, cache: bool = False, skip_bad: bool = False) -> None:
        self.entries = entries
        self.sample_rate = sample_rate
        self.skip_bad = skip_bad
        self.unreadable: dict[int, str] = {}  # index -> "manifest:line: what is wrong"
        self._cache: dict[int, np.ndarray] | None = {} if cache else None

    @classmethod
    def from_manifest(
        cls, manifests: str | Path | Sequence[str | Path], sample_rate: int, max_seconds: float | None,
        skip_bad: bool, cache: bool = False, check: str = "quick",
    ) -> tuple["UtteranceSet", ValidationReport]:
        """Read and check manifests (any format ``scan_manifest`` knows); bad entries stop or are skipped.

        Args:
            manifests: a manifest, a comma list or a sequence of them: several make one set
                (``scan_manifests``: ids must stay unique across them).
            check: the pre-flight audio check, ``TrainConfig.check_audio``: none, quick or full
                (see ``nue_core.data.validate``).
        """
        paths = manifest_paths(manifests)
        scanned = scan_manifests(paths)  # bad lines are reported (or skipped) with the bad audio
        entries, report = checked_entries(scanned.entries, " + ".join(paths), max_seconds, skip_bad,
                                          scanned.problems, decode_rate=sample_rate if check == "full" else None,
                                          probe=check != "none")
        del scanned  # the checked entries replace the scanned ones: keep one copy of a large corpus
        return cls(entries, sample_rate, cache, skip_bad), report

    def __len__(self) -> int:
        return len(self.entries)

    def __getstate__(self) -> dict:
        # A pickled copy (a loader worker started by spawn/forkserver) starts with an empty cache:
        # shipping the decoded corpus to every worker would multiply it in memory.
        state = dict(self.__dict__)
        state["_cache"] = {} if self._cache is not None else None
        return state

    @property
    def durations(self) -> list[float]:
        return [float(e.duration or 0.0) for e in self.entries]

    def audio(self, index: int) -> np.ndarray:
        """(s,) float32 samples of entry ``index`` at ``sample_rate``.

        Raises:
            UnreadableItemError: the audio cannot be read now (whatever ``skip_bad`` says).
        """
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        e = self.entries[index]
        try:
            wave = read_entry_audio(e, self.sample_rate)  # a file, a tar member or a dataset row
        except (AudioError, OSError) as exc:  # OSError: a file deleted or unreachable since the check
            raise UnreadableItemError(f"{e.source or e.id}: {exc}") from None
        if self._cache is not None:
            self._cache[index] = wave
        return wave

    def batch(
        self, indices: list[int], aug: AugmentConfig | None = None, rng: np.random.Generator | None = None
    ) -> AudioBatch:
        """A padded batch of ``indices``; augmented when ``aug`` is enabled and ``rng`` given.

        With ``skip_bad``, items whose audio cannot be read are left out (the batch may be empty).

        Raises:
            UnreadableItemError: an item's audio cannot be read, without ``skip_bad``.
        """
        kept, waves = [], []
        for i in indices:
            if i in self.unreadable:
                continue  # known bad: not read again
            try:
                waves.append(self.audio(i))
            except UnreadableItemError as exc:
                if not self.skip_bad:
                    raise
                self.unreadable[i] = str(exc)
                continue
            kept.append(i)
        if aug is not None and aug.enabled and rng is not None:
            try:
                waves = [augment(w, aug, rng, self.sample_rate) for w in waves]
            except AudioError as exc:  # a noise or impulse-response file (the message names it): stop
                raise UnreadableItemError(str(exc)) from None  # with a checkpoint, as for an item
        waveforms, lengths = pad_waveforms(waves)
        return AudioBatch(waveforms, lengths, [self.entries[i].text for i in kept], [self.entries[i].id for i in kept])

    def shard_streams(self) -> list[int | None]:
        """Per entry the number of the tar shard it is read from (in order of first appearance),
        None for an entry with a file of its own (``batching.shard_windows`` takes this)."""
        numbers: dict[str, int] = {}
        return [numbers.setdefault(str(e.audio), len(numbers)) if isinstance(e.container, TarMember) else None
                for e in self.entries]
