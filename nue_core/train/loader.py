"""The training input pipeline: batches read, resampled, augmented and padded in worker processes,
prefetched ahead of the training loop.

The loop asks for *batch requests*, each a pure function of ``(seed, epoch, position, step, rank,
micro)``: which indices (``make_batches`` + ``shard_batches``, rolling over epochs), which seed the
augmentation draws from (``[seed, step, rank, micro]``) and where the data order stands after it.
A ``torch.utils.data.DataLoader`` (``batch_size=None``) hands the requests to its workers, which
build the padded ``AudioBatch``; the loop consumes them in request order. So prefetching ahead,
and restarting at a resumed ``(step, epoch, position)``, yields the same batches and the same
augmentation draws with any number of workers (0 = read in the training process, synchronously).

One request stream spans every epoch of a run, so the workers start once per ``fit`` (no restart
at an epoch boundary) and are shut down when it ends, fails or stops on SIGTERM. Workers ignore
SIGTERM (a scheduler often signals the whole process group): the training process decides when to
stop, finishes its step, checkpoints and shuts them down; a worker whose parent died (SIGKILL)
exits on its own (torch's watchdog).

Unreadable audio is found in the worker and travels back as data, not as an exception: the loaded
batch names the items left out (``skip_bad``), or carries the error message, raised by the loop
at the step the batch belongs to (not when a worker happened to read it ahead).

Memory: a worker holds the manifest entries, not the audio; with ``cache_audio`` each process
(worker) keeps its own cache of what it decoded, so up to ``num_workers`` copies of the corpus
(use it for small sets only).

Shape legend: b = batch, s = audio samples.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from nue_core.data.augment import AugmentConfig
from nue_core.data.batching import AudioBatch, BatchOrder, make_batches, shard_batches
from nue_core.train.data import UnreadableItemError, UtteranceSet


@dataclass(frozen=True)
class BatchRequest:
    """One micro-batch to read: what a worker needs, and where the data order stands around it.

    Attributes:
        step, micro: the optimizer step and the micro-batch (of ``grad_accum``) it belongs to.
        indices: entries of the ``UtteranceSet``.
        rng_seed: seed words of the augmentation generator (``np.random.default_rng(rng_seed)``).
        before, after: the data order ``(epoch, position)`` before and after taking this batch.
    """

    step: int
    micro: int
    indices: tuple[int, ...]
    rng_seed: tuple[int, ...]
    before: tuple[int, int]
    after: tuple[int, int]


@dataclass
class LoadedBatch:
    """What a worker sends back for a request.

    Attributes:
        batch: the padded batch (b may be 0 when every item was unreadable under ``skip_bad``);
            None when ``error`` is set.
        unreadable: entry id -> ``"manifest:line: what is wrong"`` of the items left out (``skip_bad``).
        error: the ``UnreadableItemError`` message met without ``skip_bad``.
    """

    request: BatchRequest
    batch: AudioBatch | None
    unreadable: dict[str, str] = field(default_factory=dict)
    error: str | None = None

    def pin_memory(self) -> "LoadedBatch":
        """Page-locked copies of the tensors (the DataLoader calls this when ``pin_memory``)."""
        if self.batch is None:
            return self
        b = self.batch
        pinned = AudioBatch(b.waveforms.pin_memory(), b.lengths.pin_memory(), b.texts, b.ids)
        return LoadedBatch(self.request, pinned, self.unreadable, self.error)


class BatchPlan:
    """This rank's batches: ``make_batches`` of ``(seed, epoch)``, then its ``shard_batches`` share.

    Args:
        durations: seconds of each utterance.
        batch_seconds, max_batch_size: the batch bounds (``make_batches``).
        seed: the run's seed (data order and augmentation).
        rank, world_size: this process and how many share the data.
        groups: ``make_batches`` groups (tar shards read a window at a time), or None.
    """

    def __init__(self, durations: Sequence[float], batch_seconds: float, seed: int, max_batch_size: int | None,
                 rank: int, world_size: int, groups: Sequence[tuple[int, int]] | None = None) -> None:
        self.durations, self.batch_seconds, self.seed = list(durations), batch_seconds, seed
        self.max_batch_size, self.rank, self.world_size = max_batch_size, rank, world_size
        self.groups = list(groups) if groups is not None else None
        self._cached: tuple[int, list[list[int]]] | None = None  # one epoch: the loop reads them in order

    def epoch(self, epoch: int) -> list[list[int]]:
        """This rank's batches (lists of indices) of ``epoch``."""
        if self._cached is None or self._cached[0] != epoch:
            batches = make_batches(self.durations, self.batch_seconds, self.seed, epoch,
                                   max_batch_size=self.max_batch_size, groups=self.groups)
            self._cached = (epoch, shard_batches(batches, self.rank, self.world_size))
        return self._cached[1]

    def take(self, order: BatchOrder) -> tuple[list[int], BatchOrder]:
        """The batch at ``order`` (rolling over to the next epoch at the end of one) and the order after it."""
        epoch, position = order.epoch, order.position
        if position >= len(self.epoch(epoch)):
            epoch, position = epoch + 1, 0
        return self.epoch(epoch)[position], BatchOrder(epoch, position + 1)

    def requests(self, step: int, order: BatchOrder, grad_accum: int, stop: int) -> Iterator[BatchRequest]:
        """Every request from ``(step, micro 0)`` at ``order`` up to (not including) step ``stop``."""
        order = BatchOrder(order.epoch, order.position)
        for s in range(step, stop):
            for micro in range(grad_accum):
                indices, after = self.take(order)
                yield BatchRequest(s, micro, tuple(indices), (self.seed & 0xFFFFFFFF, s, self.rank, micro),
                                   (order.epoch, order.position), (after.epoch, after.position))
                order = after


class RequestSampler(Sampler[BatchRequest]):
    """The DataLoader's "indices": the requests of ``BatchPlan.requests``, computed in the training process."""

    def __init__(self, plan: BatchPlan, step: int, order: BatchOrder, grad_accum: int, stop: int) -> None:
        self.plan, self.step, self.order, self.grad_accum, self.stop = plan, step, order, grad_accum, stop

    def __iter__(self) -> Iterator[BatchRequest]:
        return self.plan.requests(self.step, self.order, self.grad_accum, self.stop)

    def __len__(self) -> int:
        return max(0, self.stop - self.step) * self.grad_accum


class BatchDataset(Dataset):
    """Map-style dataset whose keys are ``BatchRequest``s and whose items are ``LoadedBatch``es.

    Args:
        data: the utterances (a worker gets its own copy: its own cache and unreadable record).
        augment: the augmentation settings; the generator comes from each request.
    """

    def __init__(self, data: UtteranceSet, augment: AugmentConfig) -> None:
        self.data, self.augment = data, augment

    def __getitem__(self, request: BatchRequest) -> LoadedBatch:  # type: ignore[override]
        data = self.data
        rng = np.random.default_rng(list(request.rng_seed))
        try:
            batch = data.batch(list(request.indices), self.augment, rng)
        except UnreadableItemError as exc:  # as data: raised by the loop at the step it belongs to
            return LoadedBatch(request, None, {}, str(exc))
        bad = {data.entries[i].id: data.unreadable[i] for i in request.indices if i in data.unreadable}
        return LoadedBatch(request, batch, bad)


def available_cpus() -> int:
    """CPU cores this process may run on (its affinity mask, which container limits often set)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def resolve_workers(requested: int | None, cuda: bool, cpus: int | None = None, local_processes: int | None = None) -> int:
    """The number of loader workers: ``requested``, or chosen from the machine when None.

    Auto, from this process's share of the host's cores (``cpus / local_processes``, torchrun's
    ``LOCAL_WORLD_SIZE``): with a GPU, min(4, share - 1) (the GPU does the model's work; one core
    stays with the training process). On a CPU-only host, 2 when the share is 2 cores or more,
    else 0: there the model's threads use every core and a worker mostly waits on files, so 2 cost
    nothing measurable without file latency and hide 92% of a 20 ms per-file latency that 1 worker
    hides 20% of (one worker reads a batch's files one after another: it can hide at most one
    step's compute time of waiting). ``benchmarks/train_throughput.py`` measures this.
    """
    if requested is not None:
        return requested
    cpus = available_cpus() if cpus is None else cpus
    local = local_processes or int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    share = cpus // max(local, 1)
    if cuda:
        return max(0, min(4, share - 1))
    return 2 if share >= 2 else 0


def _worker_init(worker_id: int) -> None:
    # A scheduler's SIGTERM often reaches the whole process group: the training process finishes
    # its step, checkpoints and shuts the workers down; a worker dying first would abort that.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _as_is(item: LoadedBatch) -> LoadedBatch:
    return item  # the worker already built the batch (no default_convert of the dataclass)


class BatchFeed:
    """Loaded batches in request order from ``(step, order)``, read by ``num_workers`` processes.

    Args:
        data, augment: what to read and how to augment it.
        plan: this rank's batches.
        step, order: where the stream starts (``TrainerState.step`` / ``.order``).
        grad_accum: micro-batches per step.
        stop: the step the stream ends before (the run's ``total_steps``).
        num_workers: worker processes; 0 reads in this process when a batch is asked for.
        prefetch: batches read ahead per worker.
        pin_memory: page-locked batches (for a CUDA device).
    """

    def __init__(self, data: UtteranceSet, augment: AugmentConfig, plan: BatchPlan, step: int, order: BatchOrder,
                 grad_accum: int, stop: int, num_workers: int, prefetch: int = 2, pin_memory: bool = False) -> None:
        self.num_workers = num_workers
        self._next = (step, 0, (order.epoch, order.position))
        self._grad_accum, self._stop = grad_accum, stop
        loader = DataLoader(
            BatchDataset(data, augment), batch_size=None, sampler=RequestSampler(plan, step, order, grad_accum, stop),
            num_workers=num_workers, prefetch_factor=prefetch if num_workers > 0 else None,
            collate_fn=_as_is, pin_memory=pin_memory, worker_init_fn=_worker_init if num_workers > 0 else None,
            # Its own generator: otherwise the loader draws its worker base seed from the global torch
            # RNG, shifting dropout and SpecAugment draws by whether (and when) a loader started.
            generator=torch.Generator().manual_seed(0),
        )
        self._iterator: Iterator[LoadedBatch] | None = iter(loader)

    def expects(self, step: int, order: BatchOrder) -> bool:
        """Whether the next batch is micro-batch 0 of ``step`` at ``order`` (else the feed must restart)."""
        return (self._iterator is not None and step < self._stop
                and self._next == (step, 0, (order.epoch, order.position)))

    def __next__(self) -> LoadedBatch:
        if self._iterator is None:
            raise StopIteration
        loaded = next(self._iterator)
        r = loaded.request
        last = r.micro + 1 == self._grad_accum
        self._next = (r.step + 1, 0, r.after) if last else (r.step, r.micro + 1, r.after)
        return loaded

    def __iter__(self) -> "BatchFeed":
        return self

    def close(self) -> None:
        """Stop the workers now (not whenever the garbage collector gets to the iterator)."""
        iterator, self._iterator = self._iterator, None
        shutdown = getattr(iterator, "_shutdown_workers", None)  # what the iterator's __del__ calls
        if shutdown is not None:
            shutdown()
