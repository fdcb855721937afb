"""The training loop: AdamW + warm-up/decay, accumulation, clipping, mixed precision, through accelerate.

One code path serves one CPU, one GPU and many processes (``torchrun`` / ``accelerate launch``:
DDP; FSDP and DeepSpeed through accelerate's own config). Every rank computes the same batch list
from ``(seed, epoch)`` and takes its share, so no sampler state needs to be exchanged.

Reproducible resume: the data position, optimizer, scheduler and RNG states are checkpointed, and
the random state is also re-derived from ``(seed, step, rank)`` at every step, so a resumed run does
the same arithmetic as an uninterrupted one (validation and saving in between change nothing).

Faults never end in a traceback (``nue_core.train.faults`` says why each is handled as it is): a
failed write (full disk) stops the run keeping the latest checkpoint; an item whose audio turns out
unreadable is skipped and counted under ``skip_bad``, else stops the run with a checkpoint; a
damaged latest checkpoint is reported and the one before it used (``resume``).

Shape legend: b = batch, s = audio samples.
"""

from __future__ import annotations

import contextlib
import functools
import math
import random
import signal
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from nue_core.checkpoint import WEIGHTS_FILE, check_tensors, load_checked, save_model
from nue_core.data.batching import AudioBatch, BatchOrder, shard_windows
from nue_core.errors import CheckpointError, ConfigError
from nue_core.generation import GenerationConfig
from nue_core.grad_checkpointing import enable_gradient_checkpointing
from nue_core.model import SpeechLM
from nue_core.train import checkpointing as ckpt
from nue_core.train import sharding
from nue_core.train.config import TrainConfig
from nue_core.train.data import UnreadableItemError, UtteranceSet
from nue_core.train.faults import RunGuard, TrainingError
from nue_core.train.loader import BatchFeed, BatchPlan, resolve_workers
from nue_core.train.logs import MetricsLog, MetricsWindow, PlainProgress, ProgressFactory, TrainProgress
from nue_core.train.optim import build_optimizer, build_scheduler
from nue_core.train.state import TrainerState, TrainResult
from nue_core.train.tracking import Trackers, accelerator_kwargs
from nue_core.train.validation import ValidationResult, validate

def make_accelerator(config: TrainConfig, run_dir: Path | None = None) -> Any:
    """An ``accelerate.Accelerator`` for this config (DDP kwargs, mixed precision checked; the
    ``report_to`` trackers, writing under ``run_dir``: none without it).

    Raises:
        ConfigError: fp16 without a GPU; a tracker in ``report_to`` is not installed.
    """
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    cuda = torch.cuda.is_available()
    if config.precision == "fp16" and not cuda:
        raise ConfigError("precision fp16 needs a CUDA GPU (loss scaling); on CPU use bf16 or fp32")
    mixed = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[config.precision]
    ddp = DistributedDataParallelKwargs(find_unused_parameters=config.find_unused_parameters)
    return Accelerator(mixed_precision=mixed, cpu=not cuda, kwargs_handlers=[ddp],
                       **accelerator_kwargs(config.report_to, run_dir))


def seed_everything(seed: int, *salt: int) -> None:
    """Seed python, numpy and torch from ``(seed, *salt)``."""
    value = int(np.random.SeedSequence([seed & 0xFFFFFFFF, *salt]).generate_state(1)[0])
    random.seed(value)
    np.random.seed(value)
    torch.manual_seed(value)


class Trainer:
    """Trains a SpeechLM on an UtteranceSet, validating, logging and checkpointing into ``run_dir``.

    Args:
        model: the model (trainability already applied by the composer).
        config: training settings.
        train, valid: validated data (``valid`` may be None: no validation, no best model).
        run_dir: output folder (checkpoints/, best/, final/, metrics.jsonl, tensorboard/).
        accelerator: an ``accelerate.Accelerator``; default: ``make_accelerator(config, run_dir)``.
        progress: what shows the steps (the CLI's rich bar); default: messages as plain lines.
    """

    def __init__(
        self, model: SpeechLM, config: TrainConfig, train: UtteranceSet, valid: UtteranceSet | None,
        run_dir: Path | str, accelerator: Any = None, progress: ProgressFactory | None = None,
    ) -> None:
        self.config, self.train_data, self.valid_data = config, train, valid
        self.run_dir = Path(run_dir)
        self.acc = accelerator or make_accelerator(config, self.run_dir)
        self.progress = progress or PlainProgress
        if config.gradient_checkpointing:
            enable_gradient_checkpointing(model)
        self.raw_model = model
        if sharding.wants_own_sharding(config.fsdp, config.precision, self.acc):  # docs: nue_core.train.sharding
            self.model = sharding.shard_model(model.train(), self.acc.device, config.find_unused_parameters)
            self.optimizer = self.acc.prepare(build_optimizer(self.model, config))
        else:
            self.model, self.optimizer = self.acc.prepare(model.train(), build_optimizer(model, config))
        self._sharded = sharding.is_sharded(self.model)
        self.state = TrainerState()
        self.total_steps = self._total_steps()
        self.scheduler = build_scheduler(self.optimizer, config, self.total_steps)
        self._stop_requested = False
        self._saved_step: int | None = None  # the step of the checkpoint last written or resumed from
        self.guard = RunGuard(self.acc, self.run_dir, lambda: self.state.step)
        self._params = [p for p in self.model.parameters() if p.requires_grad]
        self._feed: BatchFeed | None = None  # the input pipeline, started by the first step that needs it

    # ---- data ---------------------------------------------------------------------------------
    @functools.cached_property
    def _plan(self) -> BatchPlan:
        c = self.config
        streams = self.train_data.shard_streams()
        groups = shard_windows(streams, c.shard_window) if c.shard_window and any(s is not None for s in streams) else None
        return BatchPlan(self.train_data.durations, c.batch_seconds, c.seed, c.max_batch_size,
                         self.acc.process_index, self.acc.num_processes, groups)

    def _epoch_batches(self, epoch: int) -> list[list[int]]:
        return self._plan.epoch(epoch)

    def _total_steps(self) -> int:
        if self.config.max_steps is not None:
            return self.config.max_steps
        per_epoch = len(self._epoch_batches(0))
        return max(1, math.ceil(self.config.epochs * per_epoch / self.config.grad_accum))

    def _next_batches(self) -> BatchFeed:
        """The input pipeline positioned at this step; (re)started when it is not (first step, resume)."""
        step, order = self.state.step, self.state.order
        if self._feed is None or not self._feed.expects(step, order):
            self.close_loader()
            c = self.config
            workers = resolve_workers(c.num_workers, self.acc.device.type == "cuda")
            self._feed = BatchFeed(self.train_data, c.augment, self._plan, step, order, c.grad_accum,
                                   max(self.total_steps, step + 1), workers, c.prefetch,
                                   pin_memory=self.acc.device.type == "cuda")
        return self._feed

    def close_loader(self) -> None:
        """Shut the loader's worker processes down (``fit`` does, however it ends)."""
        feed, self._feed = self._feed, None
        if feed is not None:
            feed.close()

    # ---- one optimizer step -------------------------------------------------------------------
    def _all_finite(self, value: torch.Tensor) -> bool:
        return not self.guard.any_rank(bool((~torch.isfinite(value.detach())).any()))[0]

    def _micro_batches(self) -> tuple[list[AudioBatch], bool]:
        """This step's ``grad_accum`` batches, all read before the first forward pass, and whether
        any rank has one left empty (every item unreadable, under ``skip_bad``).

        Raises:
            UnreadableItemError: on every rank, when one met an unreadable item without
                ``skip_bad``; the data order is put back, so a resumed run retries this step.
        """
        order, feed = self.state.order, self._next_batches()
        batches: list[AudioBatch] = []
        skipped: dict[str, str] = {}
        error = None
        for _ in range(self.config.grad_accum):
            loaded = next(feed)
            if loaded.error is not None:
                error = UnreadableItemError(loaded.error)
                break
            assert loaded.batch is not None
            self.state.order = BatchOrder(*loaded.request.after)
            batches.append(loaded.batch)
            skipped.update(loaded.unreadable)
        failed, empty = self.guard.any_rank(error is not None, any(not b.ids for b in batches))
        if failed:
            self.state.order = order
            raise error or UnreadableItemError("another process met an unreadable item (its message names it)")
        self.state.skipped_items.update(skipped)
        return batches, empty

    def train_step(self) -> dict[str, float] | None:
        """One optimizer step over ``grad_accum`` batches; None when skipped (non-finite loss or
        gradient, or a batch whose items were all unreadable)."""
        seed_everything(self.config.seed, self.state.step, self.acc.process_index)
        batches, empty = self._micro_batches()
        if empty:
            return self._skip_step(count=False)
        totals = {"loss": 0.0, "lm_loss": 0.0, "ctc_loss": 0.0, "samples": 0.0}
        accum = self.config.grad_accum
        for micro, batch in enumerate(batches):
            sync = contextlib.nullcontext() if micro == accum - 1 else self.acc.no_sync(self.model)
            with sync:
                with self.acc.autocast():
                    # non_blocking: the loader pins batches on CUDA, so the copy overlaps the launch
                    out = self.model(batch.waveforms.to(self.acc.device, non_blocking=True),
                                     batch.lengths.to(self.acc.device, non_blocking=True),
                                     self.raw_model.target_ids(batch.texts))
                if not self._all_finite(out.loss):
                    return self._skip_step()
                self.acc.backward(out.loss / accum)
            totals["loss"] += float(out.loss.detach()) / accum
            totals["lm_loss"] += float(out.lm_loss.detach()) / accum
            totals["ctc_loss"] += float(out.ctc_loss.detach()) / accum if out.ctc_loss is not None else 0.0
            totals["samples"] += float(batch.lengths.sum())
        return self._apply_update(totals)

    def _apply_update(self, totals: dict[str, float]) -> dict[str, float] | None:
        if self._sharded:  # each rank holds a shard of the gradients: the norm takes them all
            self.acc.unscale_gradients()
            norm = sharding.grad_norm(self._params, self.config.clip)
        elif self.config.clip is not None:
            norm = self.acc.clip_grad_norm_(self._params, self.config.clip)
        else:
            norm = torch.norm(torch.stack([p.grad.detach().norm() for p in self._params if p.grad is not None]))
        if not self._all_finite(torch.as_tensor(norm)):
            return self._skip_step()
        self.optimizer.step()
        self.raw_model.is_trained = True  # transcribing it in memory after training must not warn
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        totals["grad_norm"] = float(norm)
        return totals

    def _skip_step(self, count: bool = True) -> None:
        """Drop this step's gradients, count it (non-finite: ``count``), stop when there were too many."""
        self.optimizer.zero_grad(set_to_none=True)
        with warnings.catch_warnings():  # torch warns when no optimizer.step() came first: intended here
            warnings.simplefilter("ignore", UserWarning)
            self.scheduler.step()  # the step is consumed either way, so the schedule stays on time
        if not count:
            return None
        self.state.bad_steps += 1
        if self.state.bad_steps > self.config.max_bad_steps:
            raise TrainingError(
                f"stopped at step {self.state.step + 1}: {self.state.bad_steps} steps had a non-finite "
                f"loss or gradient (max_bad_steps={self.config.max_bad_steps}); lower lr, use fp32/bf16, "
                "or check the data"
            )
        return None

    # ---- validation, checkpoints, resume ------------------------------------------------------
    def run_validation(self) -> ValidationResult | None:
        """Validate on the main process (others wait); keep the best model folder."""
        if self.valid_data is None:
            return None
        result, failure = None, None
        with sharding.gathered(self.model):  # FSDP: whole weights everywhere, so the main process decodes alone
            if self.acc.is_main_process:
                c = self.config
                gen = GenerationConfig.for_model(self.raw_model.config, tokens_per_second=c.decode_tokens_per_second,
                                                 extra_tokens=c.decode_extra_tokens)
                model = self.acc.unwrap_model(self.model)
                try:
                    result = validate(model, self.valid_data, c.eval_batch_seconds or c.batch_seconds, gen,
                                      c.eval_max_items, autocast=self.acc.autocast)
                except UnreadableItemError as exc:
                    failure = exc
        self.acc.wait_for_everyone()
        self.guard.stop_together(failure)
        self._keep_best(result)
        return result

    def _keep_best(self, result: ValidationResult | None) -> None:
        """Write best/ when the main process's ``result`` beats the best so far (every rank calls it:
        gathering sharded weights takes them all)."""
        value = result.metric(self.config.best_metric) if result is not None and result.items > 0 else None
        better = value is not None and (self.state.best is None or value < self.state.best)
        if not self.guard.any_rank(better)[0]:
            return
        state = self._model_state()
        best = self.run_dir / "best"
        self.guard.write_on_main(best, lambda: save_model(self.raw_model, best, trained=True, state=state))
        if value is not None:
            self.state.best, self.state.best_step = value, self.state.step  # once it is on disk

    def save_checkpoint(self) -> Path | None:
        """Write a resumable checkpoint (main process writes; every rank joins the state gather).

        Raises:
            RunWriteError: on every rank, when the write failed (the earlier checkpoints are intact).
        """
        model_state = self._model_state()
        optimizer_state = (sharding.full_optimizer_state(self.model, self.optimizer) if self._sharded
                           else self.optimizer.state_dict())
        target = self.run_dir / ckpt.CHECKPOINTS / f"{ckpt.PREFIX}{self.state.step:08d}"
        path = self.guard.write_on_main(target, lambda: ckpt.save_checkpoint(
            self.run_dir, self.state.step, self.raw_model, model_state, optimizer_state,
            self.scheduler.state_dict(), self.state.to_dict(), self.config.keep_last,
        ))
        self._saved_step = self.state.step
        return path

    def resume(self, folder: Path | None = None, say: Callable[[str], None] = print) -> bool:
        """Load the latest intact (or the given) checkpoint of ``run_dir``; False when there is none.

        A damaged checkpoint (a truncated or hand-edited ``trainer_state.json`` ...) is reported
        through ``say`` in one line, and the one before it is used.

        Raises:
            CheckpointError: the given ``folder`` is damaged, or none of the run's checkpoints is intact.
            TrainingError: the checkpoint was written for another model.
        """
        if folder is not None:
            self._load(Path(folder))
            return True
        damaged: list[str] = []
        for candidate in reversed(ckpt.list_checkpoints(self.run_dir)):
            try:
                self._load(candidate)
            except CheckpointError as exc:
                damaged.append(str(exc))
                continue
            for problem in damaged:
                say(f"warning: skipped a damaged checkpoint ({problem}); resuming from {candidate.name}")
            return True
        if damaged:
            raise CheckpointError(f"no intact checkpoint in {self.run_dir / ckpt.CHECKPOINTS}: "
                                  + "; ".join(damaged) + "; start over with --overwrite")
        return False

    def _load(self, folder: Path) -> None:
        """Restore from one checkpoint; every file is checked before the model or RNG is touched."""
        loaded = ckpt.read_checkpoint(folder)
        state = TrainerState.from_dict(loaded["trainer"], source=str(folder / ckpt.STATE_FILE))
        model = self.acc.unwrap_model(self.model)
        try:  # the same name, shape and dtype checks as loading a model folder
            check_tensors(model.state_dict(), loaded["model"], folder / "model" / WEIGHTS_FILE)
            if self._sharded:  # each rank keeps its slice of the whole weights
                sharding.load_full_weights(self.model, loaded["model"])
            else:
                load_checked(model, loaded["model"], folder / "model" / WEIGHTS_FILE)
        except CheckpointError as exc:  # not damage: another model; older checkpoints would not fit either
            raise TrainingError(f"{exc}; resume with the same MODEL_CONFIG") from None
        try:
            if self._sharded:
                sharding.load_full_optimizer(self.model, self.optimizer, loaded["optimizer"])
            else:
                self.optimizer.load_state_dict(loaded["optimizer"])
            self.scheduler.load_state_dict(loaded["scheduler"])
        except (KeyError, ValueError, TypeError, IndexError, RuntimeError) as exc:
            raise CheckpointError(f"{folder}: optimizer or scheduler state does not fit ({exc})") from None
        ckpt.set_rng_state(*loaded["rng"])
        self.state, self._saved_step = state, state.step

    # ---- the loop -----------------------------------------------------------------------------
    def _on_sigterm(self, signum: int, frame: Any) -> None:
        self._stop_requested = True  # acted on after the current step, so the checkpoint is consistent

    def _should_stop(self) -> bool:
        return self.guard.any_rank(self._stop_requested)[0]

    def fit(self) -> TrainResult:
        """Train until ``total_steps`` (or SIGTERM: checkpoint and return ``stopped``).

        Raises:
            RunWriteError: a write into the run folder failed (see the module doc).
            UnreadableItemError: an item's audio could not be read, without ``skip_bad``.
        """
        log = None
        if self.acc.is_main_process:
            with self.guard.writing():
                c = self.config
                trackers = Trackers(self.acc, c.tracker_project, c, self.raw_model.config, self.run_dir)
                log = MetricsLog(self.run_dir, trackers)
        previous = signal.signal(signal.SIGTERM, self._on_sigterm)
        try:
            status, last = self._loop(log)
        except BaseException:
            with contextlib.suppress(OSError):  # the error on its way out says more
                if log is not None:
                    log.close()
            raise
        finally:
            self.close_loader()
            signal.signal(signal.SIGTERM, previous)
        if log is not None:
            with self.guard.writing():
                log.close()
        final = self._save_final() if status == "finished" else None
        best = self.run_dir / "best"
        skipped = list(self.state.skipped_items.values())
        skipped += list(self.valid_data.unreadable.values()) if self.valid_data is not None else []
        return TrainResult(status, self.state.step, self.state.bad_steps, final, best if best.is_dir() else None,
                           last, skipped)

    def _loop(self, log: MetricsLog | None) -> tuple[str, ValidationResult | None]:
        c, last = self.config, None
        show = c.progress and self.acc.is_main_process
        with self.progress(self.total_steps, self.state.step, show) as bar:
            window = MetricsWindow()
            while self.state.step < self.total_steps:
                try:
                    stats = self.train_step()
                except UnreadableItemError as exc:
                    raise self._stopped_by(exc) from None
                self.state.step += 1
                if stats is not None:
                    window.add(stats, self.train_data.sample_rate)
                    self.state.audio_seconds += stats["samples"] / self.train_data.sample_rate
                lr = self.scheduler.get_last_lr()[0]
                bar.update(self.state.step, window.loss(), lr, window.rate())
                if log is not None and (self.state.step % c.log_every == 0 or self.state.step == self.total_steps):
                    with self.guard.writing():
                        log.log("train", self.state.step, {**window.summary(), "lr": lr, "bad_steps": self.state.bad_steps})
                    window = MetricsWindow()
                if self.state.step % c.eval_every == 0 or self.state.step == self.total_steps:
                    try:
                        last = self._validate_and_log(log, bar)
                    except UnreadableItemError as exc:
                        raise self._stopped_by(exc) from None
                if self._should_stop():
                    self.save_checkpoint()
                    bar.print(f"stopped by SIGTERM at step {self.state.step}; checkpoint written, continue with --resume")
                    return "stopped", last
                if self.state.step % c.save_every == 0 or self.state.step == self.total_steps:
                    self.save_checkpoint()
        return "finished", last

    def _stopped_by(self, exc: UnreadableItemError) -> UnreadableItemError:
        """Keep the steps done (a checkpoint, unless this step has one) and say how to go on, in one line."""
        if self._saved_step != self.state.step:
            self.save_checkpoint()
        return UnreadableItemError(
            f"{exc}; stopped at step {self.state.step} (checkpoint {ckpt.PREFIX}{self.state.step:08d} kept): fix or "
            "remove that file or entry (--skip-bad skips unreadable manifest items), then continue with --resume")

    def _validate_and_log(self, log: MetricsLog | None, bar: TrainProgress) -> ValidationResult | None:
        result = self.run_validation()
        if result is not None and log is not None:
            with self.guard.writing():
                log.log("valid", self.state.step, {"loss": result.loss, "cer": result.cer, "wer": result.wer,
                                                   "items": result.items})
            ref, hyp = result.examples[0] if result.examples else ("", "")
            bar.print(f"step {self.state.step}: valid loss {result.loss:.3f}  CER {result.cer:.2%}  "
                      f"WER {result.wer:.2%}  | ref: {ref!r} hyp: {hyp!r}")
        return result

    def _model_state(self) -> dict[str, torch.Tensor]:
        """The whole weights on the main process (every rank calls it: sharded ones are gathered)."""
        return sharding.full_model_state(self.model) if self._sharded else self.acc.get_state_dict(self.model)

    def _save_final(self) -> Path:
        state = self._model_state()
        final = self.run_dir / "final"
        self.guard.write_on_main(final, lambda: save_model(self.raw_model, final, trained=True, state=state))
        return final
