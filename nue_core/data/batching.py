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

    Returns:
        A list of batches, each a list of indices into ``durations``.
    """
    if batch_seconds <= 0:
        raise ConfigError(f"batch_seconds must be positive, got {batch_seconds}")
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
