"""Data-parallel inference: the input list sharded over processes, results merged in input order.

Launch any ``nue transcribe`` / ``nue evaluate`` command under torchrun or ``accelerate launch``:
each process reads RANK / WORLD_SIZE / LOCAL_RANK from the environment, takes every
WORLD_SIZE-th input starting at its rank (interleaved, so long and short inputs spread evenly),
writes its results with their input indices to a part file, and after a barrier rank 0 merges the
parts in input order and removes them. A crashed run leaves its finished parts for inspection.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Sequence, TypeVar

from nue_core.inference.transcriber import TranscriptionResult
from nue_core.inference.writers import read_jsonl_results, write_line

T = TypeVar("T")


@dataclass(frozen=True)
class DistInfo:
    """This process's place in a data-parallel run (rank 0 of 1 when launched alone)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def dist_info() -> DistInfo:
    """Rank, world size and local rank from the torchrun / accelerate environment variables."""
    env = os.environ
    return DistInfo(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))


def init_distributed(info: DistInfo, device: str) -> None:
    """Join the process group (gloo on CPU, nccl on CUDA) when there is more than one process."""
    import torch.distributed as dist

    if info.world > 1 and not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        # Shards can take hours: the barrier before merging must outwait the slowest rank.
        dist.init_process_group(backend, timeout=timedelta(hours=12))


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()


def finish_distributed() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def shard(items: Sequence[T], info: DistInfo) -> list[tuple[int, T]]:
    """(input index, item) pairs this rank handles: every ``world``-th item from ``rank``."""
    return [(i, items[i]) for i in range(info.rank, len(items), info.world)]


def part_path(base: Path, info: DistInfo) -> Path:
    """Where rank ``info.rank`` writes its results, next to ``base``."""
    return base.with_name(f"{base.name}.part-{info.rank:05d}-of-{info.world:05d}.jsonl")


def write_part(path: Path, indexed: list[tuple[int, TranscriptionResult]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        for index, result in indexed:
            write_line(handle, result, "jsonl", index)
    os.replace(tmp, path)  # a part exists only when complete


def merge_parts(base: Path, world: int, total: int, remove: bool = True) -> list[TranscriptionResult]:
    """All ranks' results in input order (call on rank 0 after the barrier).

    Raises:
        RuntimeError: a part is missing or an input index is missing or duplicated.
    """
    merged: dict[int, TranscriptionResult] = {}
    parts = [part_path(base, DistInfo(rank, world)) for rank in range(world)]
    for path in parts:
        if not path.is_file():
            raise RuntimeError(f"{path}: part missing (did that rank fail?)")
        for index, result in read_jsonl_results(path):
            if index in merged:
                raise RuntimeError(f"{path}: input {index} appears in two parts")
            merged[index] = result
    missing = sorted(set(range(total)) - set(merged))
    if missing:
        raise RuntimeError(f"inputs {missing[:10]} missing from the parts of {base}")
    if remove:
        for path in parts:
            path.unlink()
    return [merged[i] for i in range(total)]
