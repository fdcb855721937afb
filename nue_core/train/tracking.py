"""Run tracking through accelerate's trackers (TensorBoard, Weights & Biases, MLflow, ...).

``report_to`` names them as accelerate's ``log_with`` does. ``metrics.jsonl`` (``MetricsLog``) is
written whatever they are: the trackers get the same records, as ``split/key`` scalars at the
optimizer step.

Where each writes: TensorBoard ``RUN_DIR/tensorboard/PROJECT/``; W&B ``RUN_DIR/wandb/`` (offline
with ``WANDB_MODE=offline``) and the W&B project ``tracker_project``; MLflow the experiment
``tracker_project`` at ``MLFLOW_TRACKING_URI`` (unset: mlflow's default, a SQLite database in the
working directory, which needs the full ``mlflow`` package, not ``mlflow-skinny``). Runs are named
after their folder.

A tracker named but not installed, or one that cannot start (no W&B login, a database mlflow
cannot open, a server it cannot reach), is a ``ConfigError`` naming ``report_to`` when the run
starts: accelerate would drop a missing one with a debug message, and the run would go unreported.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from nue_core.errors import ConfigError

TENSORBOARD_DIR = "tensorboard"
WANDB_DIR = "wandb"
_DATABASES = ("sqlite", "postgresql", "mysql", "mssql")  # mlflow's SQLAlchemy stores
# How to install each tracker: the project's extra where it has one, else the tracker's package.
_INSTALL = {
    "wandb": 'pip install "nue-asr[tracking]"',
    "mlflow": 'pip install "nue-asr[tracking]"',
    "comet_ml": "pip install comet-ml",
    "aim": "pip install aim",
    "clearml": "pip install clearml",
    "dvclive": "pip install dvclive",
    "swanlab": "pip install swanlab",
    "trackio": "pip install trackio",
    "tensorboard": "pip install tensorboard",
}


def check_names(names: list[str]) -> list[str]:
    """``names`` (``report_to``) as accelerate accepts them, repeats dropped; ValueError for an unknown one."""
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS
    from accelerate.utils import LoggerType

    known = sorted({*LoggerType.list(), *LOGGER_TYPE_TO_CLASS})
    out: list[str] = []
    for name in names:
        if name not in known:
            raise ValueError(f"unknown tracker {name!r}; accelerate knows: {', '.join(known)}")
        if name not in out:
            out.append(name)
    return out


def check_installed(names: list[str]) -> None:
    """Raise ConfigError naming ``report_to`` and what to install for each tracker that is not installed."""
    from accelerate.tracking import get_available_trackers

    available = {str(t) for t in get_available_trackers()}
    missing = [n for n in names if n != "all" and n not in available and n in _INSTALL]
    if missing:
        how = "; ".join(f"{n}: {_INSTALL[n]}" for n in missing)
        raise ConfigError(f"report_to names {', '.join(missing)}, not installed: {how} (or drop it from report_to)")
    if "mlflow" in names:
        _check_mlflow_store()


def _check_mlflow_store() -> None:
    """ConfigError when mlflow's tracking store is a database and SQLAlchemy is missing (mlflow-skinny)."""
    import mlflow

    uri = mlflow.get_tracking_uri()
    if uri.split(":", 1)[0].split("+", 1)[0] in _DATABASES and not _has_database_driver():
        raise ConfigError(f"report_to names mlflow, whose tracking store is {uri} (MLFLOW_TRACKING_URI), a database "
                          "that needs the full mlflow package: pip install mlflow, or set MLFLOW_TRACKING_URI to "
                          "your tracking server (http://HOST:5000)")


def _has_database_driver() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in ("sqlalchemy", "alembic"))


def accelerator_kwargs(report_to: list[str], run_dir: Path | None) -> dict[str, Any]:
    """``log_with`` and ``project_config`` for ``Accelerator``; none without a run folder.

    Raises:
        ConfigError: a tracker in ``report_to`` is not installed.
    """
    if run_dir is None or not report_to:
        return {}
    from accelerate.utils import ProjectConfiguration

    check_installed(report_to)
    # TensorBoard writes to logging_dir/PROJECT: RUN_DIR/tensorboard/PROJECT.
    project = ProjectConfiguration(project_dir=str(run_dir), logging_dir=str(Path(run_dir) / TENSORBOARD_DIR))
    return {"log_with": list(report_to), "project_config": project}


class Trackers:
    """The trackers of one run on the main process: started with the run's config, fed each
    metrics record, finished once.

    Args:
        accelerator: an ``Accelerator`` made with ``accelerator_kwargs`` (no trackers: nothing to do).
        project: the W&B project / MLflow experiment / TensorBoard subfolder (``tracker_project``).
        train_config, model_config: the run's settings, logged as its hyperparameters.
        run_dir: the run folder (its name names the run).
    """

    def __init__(self, accelerator: Any, project: str, train_config: BaseModel, model_config: BaseModel,
                 run_dir: Path) -> None:
        self._acc = accelerator
        self.active = bool(getattr(accelerator, "log_with", None))
        if not self.active:
            return
        run_dir = Path(run_dir)
        init_kwargs = {"wandb": {"name": run_dir.name, "dir": str(run_dir)}, "mlflow": {"run_name": run_dir.name}}
        if "wandb" in {str(t) for t in accelerator.log_with}:
            (run_dir / WANDB_DIR).mkdir(parents=True, exist_ok=True)  # wandb writes there only if it exists
        hparams = flat_config({"train": train_config.model_dump(mode="json"),
                               "model": model_config.model_dump(mode="json", exclude_none=True)})
        try:
            accelerator.init_trackers(project, config=hparams, init_kwargs=init_kwargs)
        except Exception as exc:  # noqa: BLE001 - any tracker's failure to start: one line, not its traceback
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ConfigError(f"report_to: {', '.join(map(str, accelerator.log_with))}: a tracker could not start "
                              f"({type(exc).__name__}: {first}); fix that or drop it from report_to") from exc

    def log(self, split: str, step: int, values: dict[str, Any]) -> None:
        """Numbers of ``values`` as ``split/key`` at ``step``."""
        if self.active:
            numbers = {f"{split}/{k}": v for k, v in values.items()
                       if isinstance(v, (int, float)) and not isinstance(v, bool)}
            self._acc.log(numbers, step=step)

    def close(self) -> None:
        """Finish every tracker (flush, close the run); later calls do nothing."""
        if self.active:
            self.active = False
            # Not accelerator.end_training(): it also destroys the process group, which the caller
            # still needs after training (the final model is gathered from every rank).
            for tracker in self._acc.trackers:
                tracker.finish()


def flat_config(data: dict[str, Any], prefix: str = "") -> dict[str, bool | int | float | str]:
    """Nested settings as ``a.b.c`` keys with scalar values (lists as JSON, None as "None"):
    what every tracker's hyperparameter table takes (TensorBoard's refuses lists)."""
    out: dict[str, bool | int | float | str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat_config(value, f"{name}."))
        elif isinstance(value, (bool, int, float, str)):
            out[name] = value
        else:
            out[name] = "None" if value is None else json.dumps(value)
    return out
