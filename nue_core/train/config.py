"""TrainConfig: every knob of a training run, validated (a typo is an error naming the key)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ConfigDict, Field, field_validator, model_validator

from nue_core.config import ConfigModel, read_yaml_mapping, validate
from nue_core.data.augment import AugmentConfig


class TrainConfig(ConfigModel):  # ConfigModel: `--set lr=yes` is an error, not lr 1.0
    """Optimisation, data, evaluation and checkpoint settings of ``nue train``."""

    # allow_inf_nan: `lr: .inf` or `batch_seconds: .nan` pass `gt=0`-style bounds or fail late
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    # optimisation
    lr: float = Field(1e-4, gt=0, description="peak learning rate (AdamW)")
    weight_decay: float = Field(0.01, ge=0, description="AdamW decoupled weight decay (not on biases/norms)")
    betas: tuple[float, float] = Field((0.9, 0.98), description="AdamW betas")
    warmup_steps: int = Field(100, ge=0, description="linear warm-up from 0 to lr over this many steps")
    schedule: Literal["linear", "cosine", "constant"] = Field("linear", description="decay after warm-up")
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="final lr as a fraction of lr")
    max_steps: int | None = Field(None, gt=0, description="optimizer steps to run (overrides epochs)")
    epochs: float = Field(1.0, gt=0, description="passes over the training data when max_steps is not set")
    grad_accum: int = Field(1, ge=1, description="batches per optimizer step")
    clip: float | None = Field(1.0, gt=0, description="max global gradient norm; None = no clipping")
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32", description="autocast precision; fp16 needs a GPU (with loss scaling), bf16 a CPU or recent GPU"
    )
    gradient_checkpointing: bool = Field(False, description="recompute activations in backward (encoder and decoder)")
    find_unused_parameters: bool = Field(
        True, description="DDP: allow parameters without gradient in a step (SpecAugment embed, LayerDrop); "
        "FSDP: reduce zeros for them"
    )
    fsdp: bool = Field(
        False, description="shard weights, gradients and optimizer state over the processes (FSDP2), for models "
        "whose training state does not fit one device; several processes (torchrun), CPU or GPU (docs/scaling.md)"
    )
    # data
    batch_seconds: float = Field(60.0, gt=0, description="padded audio seconds per batch (count x longest)")
    max_batch_size: int | None = Field(None, gt=0, description="cap on utterances per batch")
    max_audio_seconds: float | None = Field(
        None, gt=0, description="longest clip kept; default: the model config's max_audio_seconds (16)"
    )
    skip_bad: bool = Field(
        False, description="skip (and count) bad manifest entries, and items found unreadable during training, instead of stopping"
    )
    check_audio: Literal["none", "quick", "full"] = Field(
        "quick", description="pre-flight audio check: quick (header, first and last frames; ~0.5 ms per file), full "
        "(decode every file as training will: ~15 CPU-min per 1000 h of FLAC, plus reading it) or none (entries whose "
        "manifest gives a duration are not opened; a bad file is found when training reads it)"
    )
    shard_window: int = Field(
        1000, ge=0, description="tar shards: read each shard front to back, this many samples at a time (each window "
        "length-bucketed and shuffled within, shards in a random order per epoch); 0 = bucket across the whole set"
    )
    cache_audio: bool = Field(False, description="keep decoded audio in memory (small data sets)")
    num_workers: int | None = Field(
        None, ge=0, description="processes reading, augmenting and padding training batches ahead of the loop; "
        "0 = in the training process; None = from the machine: min(4, cores - 1) with a GPU, on CPU 2 (0 with one core); "
        "cores per local process"
    )
    prefetch: int = Field(2, ge=1, description="batches each loader worker reads ahead")
    augment: AugmentConfig = Field(default_factory=AugmentConfig, description="training-time augmentation")
    # evaluation and checkpoints
    eval_every: int = Field(500, gt=0, description="validate every N optimizer steps (and at the end)")
    eval_batch_seconds: float | None = Field(None, gt=0, description="batch bound for validation (default batch_seconds)")
    eval_max_items: int | None = Field(None, gt=0, description="decode at most this many validation items")
    decode_tokens_per_second: float | None = Field(
        None, gt=0, description="validation max_new_tokens per audio second (default: the model's decode settings)"
    )
    decode_extra_tokens: int | None = Field(
        None, ge=0, description="validation max_new_tokens added per item (default: the model's decode settings)"
    )
    best_metric: Literal["cer", "wer", "loss"] = Field("cer", description="validation metric that picks the best model")
    save_every: int = Field(500, gt=0, description="write a resumable checkpoint every N optimizer steps")
    keep_last: int = Field(2, ge=1, description="resumable checkpoints kept (older ones are deleted)")
    log_every: int = Field(10, gt=0, description="write training metrics every N optimizer steps")
    seed: int = Field(0, description="seeds weights order, data order, augmentation, dropout")
    max_bad_steps: int = Field(20, ge=0, description="stop after this many skipped non-finite steps in total")
    progress: bool = Field(True, description="show a progress bar")
    report_to: list[str] = Field(
        default_factory=lambda: ["tensorboard"],
        description="experiment trackers, as accelerate's log_with names them: tensorboard, wandb, mlflow, comet_ml, "
        "aim, clearml, dvclive, swanlab, trackio, all; [] = none (metrics.jsonl is always written); "
        'wandb and mlflow: pip install "nue-asr[tracking]"',
    )
    tracker_project: str = Field(
        "nue-asr", min_length=1, description="W&B project / MLflow experiment the run is reported under (the run is "
        "named after its folder); TensorBoard events go to RUN_DIR/tensorboard/THIS"
    )
    tensorboard: bool | None = Field(
        None, description="deprecated, use report_to: false removes tensorboard from report_to, true adds it"
    )

    @field_validator("report_to")
    @classmethod
    def _known_trackers(cls, names: list[str]) -> list[str]:
        from nue_core.train.tracking import check_names

        return check_names(names)

    @model_validator(mode="after")
    def _tensorboard_alias(self) -> "TrainConfig":
        """Fold the deprecated ``tensorboard`` flag into ``report_to`` (so train.yaml holds one of them)."""
        if self.tensorboard is not None:
            names = [n for n in self.report_to if n != "tensorboard"]
            self.report_to = names + ["tensorboard"] if self.tensorboard else names
            self.tensorboard = None
        return self

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "train config") -> "TrainConfig":
        """``data`` validated; ConfigError naming ``source`` and each field at fault."""
        return validate(cls, data, source)

    @classmethod
    def load(cls, path: Path | str) -> "TrainConfig":
        data = read_yaml_mapping(path, "train config", "a mapping of train settings", empty={})
        return cls.from_dict(data, source=str(path))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

