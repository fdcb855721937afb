"""Length-bucketed dynamic batches with a seeded, resumable order.

Utterances of similar length go together so little compute is spent on padding, and each batch
holds as many as fit ``batch_seconds`` of *padded* audio (count x longest clip): the padded size is
what the encoder actually processes, so it is the bound that keeps memory flat.

The order of an epoch is a pure function of ``(seed, epoch)``; the position inside it is one
integer. Resuming therefore needs only ``(epoch, position)``, and every rank of a multi-process run
computes the same batches without communicating.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Sequence

import numpy as np
import torch
from pydantic import Field, Strict

from nue_core.errors import ConfigError


def make_batches(
    durations: Sequence[float], batch_seconds: float, seed: int, epoch: int,
    shuffle: bool = True, bucket_width: float = 0.5, max_batch_size: int | None = None,
    groups: Sequence[tuple[int, int]] | None = None,
) -> list[list[int]]:
    """Batches of indices for one epoch.

    Args:
        durations: seconds of each utterance.
        batch_seconds: bound on ``len(batch) * max(duration in batch)``; a single utterance longer
            than this forms a batch of its own.
        seed, epoch: the order is a pure function of these.
        shuffle: randomise within buckets of ``bucket_width`` seconds and the batch order;
            without it batches are in length order (validation).
        max_batch_size: optional cap on utterances per batch.
        groups: per utterance ``(stream, window)``, for sequential reading (tar shards: the shard
            and the sample's window within it, ``shard_windows``). Batches then never mix groups:
            each stream's windows come front to back, one after the other; streams come in a
            random order; inside a window utterances are bucketed, batched and shuffled as usual,
            and each batch lists its utterances in stream order (forward reads).

    Returns:
        A list of batches, each a list of indices into ``durations``.
    """
    if batch_seconds <= 0:
        raise ConfigError(f"batch_seconds must be positive, got {batch_seconds}")
    if groups is not None and shuffle:
        return _grouped_batches(durations, batch_seconds, seed, epoch, bucket_width, max_batch_size, groups)
    rng = np.random.default_rng([seed, epoch])
    durations = np.asarray(durations, dtype=np.float64)
    order = rng.permutation(len(durations)) if shuffle else np.arange(len(durations))
    # Stable sort by bucket: within a bucket the random permutation survives, so batches differ
    # from epoch to epoch while their lengths stay similar.
    keys = np.floor(durations[order] / bucket_width) if shuffle else durations[order]
    order = order[np.argsort(keys, kind="stable")]
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0.0
    for index in order.tolist():
        longest_if_added = max(longest, float(durations[index]))
        full = max_batch_size is not None and len(current) >= max_batch_size
        if current and (longest_if_added * (len(current) + 1) > batch_seconds or full):
            batches.append(current)
            current, longest_if_added = [], float(durations[index])
        current.append(index)
        longest = longest_if_added
    if current:
        batches.append(current)
    if shuffle:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def _grouped_batches(
    durations: Sequence[float], batch_seconds: float, seed: int, epoch: int, bucket_width: float,
    max_batch_size: int | None, groups: Sequence[tuple[int, int]],
) -> list[list[int]]:
    """``make_batches`` with ``groups`` (see there): a pure function of ``(seed, epoch)`` too."""
    if len(groups) != len(durations):
        raise ConfigError(f"{len(groups)} groups for {len(durations)} utterances")
    members: dict[int, dict[int, list[int]]] = {}  # stream -> window -> indices
    for index, (stream, window) in enumerate(groups):
        members.setdefault(int(stream), {}).setdefault(int(window), []).append(index)
    streams = sorted(members)
    order = np.random.default_rng([seed, epoch]).permutation(len(streams))
    batches: list[list[int]] = []
    for stream in (streams[i] for i in order.tolist()):
        for window, indices in sorted(members[stream].items()):
            # Each window draws from its own stream of randomness: its batches do not depend on
            # how the others are cut.
            salt = int(np.random.SeedSequence([epoch, stream + 1, window]).generate_state(1)[0])
            local = make_batches([durations[i] for i in indices], batch_seconds, seed, salt, True, bucket_width,
                                 max_batch_size)
            batches += [sorted(indices[j] for j in batch) for batch in local]
    return batches


def shard_windows(streams: Sequence[int | None], window: int) -> list[tuple[int, int]]:
    """``make_batches`` groups for utterances read from sequential streams (tar shards).

    Args:
        streams: per utterance its stream (shard) number, None for one read from a file of its own;
            a stream's utterances are in stream order.
        window: utterances per window: a stream is read a window at a time, front to back.

    Returns:
        per utterance ``(stream, window)``; utterances of no stream share one group of their own
        (stream -1), batched among themselves as without groups.
    """
    if window <= 0:
        raise ConfigError(f"a shard window must hold at least one utterance, got {window}")
    seen: dict[int, int] = {}
    out: list[tuple[int, int]] = []
    for stream in streams:
        if stream is None:
            out.append((-1, 0))
            continue
        position = seen.get(stream, 0)
        seen[stream] = position + 1
        out.append((int(stream), position // window))
    return out


def shard_batches(batches: list[list[int]], rank: int, world_size: int) -> list[list[int]]:
    """This rank's share; the tail is dropped so every rank runs the same number of steps
    (a rank waiting for a gradient all-reduce that never comes would hang the run)."""
    usable = len(batches) - len(batches) % world_size
    if usable == 0:
        raise ConfigError(
            f"only {len(batches)} batch(es) per epoch for {world_size} processes; lower batch_seconds"
        )
    return batches[rank:usable:world_size]


@dataclass
class BatchOrder:
    """Where a run is in its data: epoch and the next batch index within that epoch's list."""

    # Annotated: read back from a checkpoint, these are checked (``nue_core.train.state``).
    epoch: Annotated[int, Strict(), Field(ge=0)] = 0
    position: Annotated[int, Strict(), Field(ge=0)] = 0

    def to_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    @classmethod
    def from_dict(cls, data: dict[str, int]) -> "BatchOrder":
        return cls(int(data["epoch"]), int(data["position"]))


@dataclass
class AudioBatch:
    """A padded batch.

    Attributes:
        waveforms: (b, s) float32, right-padded with zeros.
        lengths: (b,) valid samples.
        texts: b transcripts.
        ids: b utterance ids.
    """

    waveforms: torch.Tensor
    lengths: torch.Tensor
    texts: list[str]
    ids: list[str]


def pad_waveforms(arrays: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """(s_i,) arrays -> right-padded (b, s) float32 tensor and (b,) lengths; no arrays: (0, 0) and (0,)."""
    lengths = torch.tensor([len(a) for a in arrays], dtype=torch.long)
    out = torch.zeros(len(arrays), int(lengths.max()) if len(arrays) else 0, dtype=torch.float32)
    for row, array in enumerate(arrays):
        out[row, : len(array)] = torch.from_numpy(np.asarray(array, dtype=np.float32))
    return out, lengths
