"""What a run knows besides its tensors (``TrainerState``, checkpointed) and how it ended (``TrainResult``).

``TrainerState`` is read back from ``trainer_state.json``, a file a crash, a full disk or a hand
edit may have damaged: every field is checked (type and range, booleans are not numbers), so a
damaged file is a ``CheckpointError`` naming the file and the field, never a ``KeyError`` later.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, Strict, TypeAdapter, ValidationError

from nue_core.data.batching import BatchOrder
from nue_core.errors import CheckpointError
from nue_core.train.validation import ValidationResult

Count = Annotated[int, Strict(), Field(ge=0)]
# Keys every trainer_state.json has held since the first release; later fields have defaults, so
# checkpoints written before them still resume.
_REQUIRED = ("step", "order", "bad_steps", "best", "best_step")


@dataclass
class TrainerState:
    """What besides tensors a checkpoint must hold to resume exactly.

    Attributes:
        skipped_items: manifest entries whose audio could not be read during training (skipped
            under ``skip_bad``): entry id -> ``"manifest:line: what is wrong"``.
    """

    step: Count = 0
    order: BatchOrder = field(default_factory=BatchOrder)
    bad_steps: Count = 0
    best: Annotated[float, Strict()] | None = None
    best_step: Count | None = None
    audio_seconds: Annotated[float, Strict(), Field(ge=0)] = 0.0
    skipped_items: dict[Annotated[str, Strict()], Annotated[str, Strict()]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able state without ``step`` (the checkpoint writer adds it)."""
        data = asdict(self)
        del data["step"]
        return data

    @classmethod
    def from_dict(cls, data: Any, source: str = "trainer state") -> "TrainerState":
        """Check and convert what ``to_dict`` wrote (plus ``step``).

        Args:
            data: the parsed JSON.
            source: the file it came from, for the message.

        Raises:
            CheckpointError: one line naming ``source`` and the first field at fault.
        """
        if isinstance(data, dict):
            missing = [key for key in _REQUIRED if key not in data]
            if isinstance(data.get("order"), dict):  # {} would silently restart the data order
                missing += [f"order.{key}" for key in ("epoch", "position") if key not in data["order"]]
            if missing:
                raise CheckpointError(f"{source}: {', '.join(missing)}: missing")
        try:
            return _ADAPTER.validate_python(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "<root>"
            more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
            raise CheckpointError(f"{source}: {where}: {first['msg']}{more}") from None


_ADAPTER = TypeAdapter(TrainerState)


@dataclass
class TrainResult:
    """How a run ended: ``finished`` or ``stopped`` (SIGTERM), at which step, with what metrics.

    Attributes:
        skipped_items: ``"manifest:line: what is wrong"`` for each item whose audio could not be
            read during training or validation (skipped under ``skip_bad``), over the whole run.
    """

    status: str
    step: int
    bad_steps: int
    final_dir: Path | None
    best_dir: Path | None
    validation: ValidationResult | None = None
    skipped_items: list[str] = field(default_factory=list)
