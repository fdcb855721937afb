"""Run tracking through accelerate's trackers: report_to (and the deprecated tensorboard flag), a
clear error for a tracker that is not installed, and TensorBoard, W&B (offline) and MLflow (a file
store) each receiving the records metrics.jsonl holds."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from nue_core.errors import ConfigError
from nue_core.train import tracking
from nue_core.train.config import TrainConfig
from nue_core.train.logs import MetricsLog, read_metrics
from nue_core.train.run import train
from nue_core.train.tracking import Trackers, accelerator_kwargs, flat_config

SETTINGS = dict(max_steps=3, warmup_steps=1, batch_seconds=2.5, log_every=1, eval_every=3, save_every=100,
                progress=False, eval_max_items=2)


def test_report_to_defaults_to_tensorboard_and_the_old_flag_still_works() -> None:
    assert TrainConfig().report_to == ["tensorboard"]
    assert TrainConfig(tensorboard=False).report_to == []
    assert TrainConfig(report_to=["wandb"], tensorboard=True).report_to == ["wandb", "tensorboard"]
    assert TrainConfig(report_to=["mlflow", "tensorboard", "mlflow"], tensorboard=False).report_to == ["mlflow"]
    # train.yaml holds the resolved list only: read back, it means the same
    old = TrainConfig.from_dict({"tensorboard": False})
    dumped = yaml.safe_load(old.to_yaml())
    assert dumped["report_to"] == [] and dumped["tensorboard"] is None
    assert TrainConfig.from_dict(dumped).report_to == []


def test_an_unknown_tracker_is_refused_naming_report_to() -> None:
    with pytest.raises(ConfigError, match=r"report_to: .*unknown tracker 'tensorbord'.*tensorboard"):
        TrainConfig.from_dict({"report_to": ["tensorbord"]}, source="s")


def test_a_tracker_not_installed_names_report_to_and_the_extra(monkeypatch, tmp_path: Path) -> None:
    import accelerate.tracking

    monkeypatch.setattr(accelerate.tracking, "get_available_trackers", lambda: [])
    with pytest.raises(ConfigError) as refused:
        accelerator_kwargs(["tensorboard", "wandb", "mlflow"], tmp_path)
    message = str(refused.value)
    assert message.startswith("report_to names tensorboard, wandb, mlflow, not installed")
    assert 'wandb: pip install "nue-asr[tracking]"' in message and 'mlflow: pip install "nue-asr[tracking]"' in message
    assert accelerator_kwargs([], tmp_path) == {} and accelerator_kwargs(["wandb"], None) == {}


def test_an_mlflow_database_store_without_its_driver_is_refused(monkeypatch, tmp_path: Path) -> None:
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.setattr(tracking, "_has_database_driver", lambda: False)
    with pytest.raises(ConfigError, match=r"report_to names mlflow, whose tracking store is sqlite:///.*pip install mlflow"):
        accelerator_kwargs(["mlflow"], tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    assert accelerator_kwargs(["mlflow"], tmp_path)["log_with"] == ["mlflow"]


def test_a_tracker_that_cannot_start_is_one_line_naming_report_to(tmp_path: Path) -> None:
    from nue_core.config import ModelConfig
    from tests.conftest import tiny_config

    class Refusing(_FakeAccelerator):
        def init_trackers(self, project, config=None, init_kwargs=None) -> None:
            raise RuntimeError("api_key not configured (no-tty)\ncall wandb.login(key=...)")

    with pytest.raises(ConfigError) as refused:
        Trackers(Refusing(), "p", TrainConfig(), ModelConfig.from_dict(tiny_config()), tmp_path)
    assert str(refused.value) == ("report_to: tensorboard: a tracker could not start (RuntimeError: api_key not "
                                  "configured (no-tty)); fix that or drop it from report_to")


def test_flat_config_gives_every_tracker_scalars() -> None:
    flat = flat_config({"train": {"lr": 0.1, "betas": [0.9, 0.98], "augment": {"gain_db": None, "prob": 1.0}},
                        "model": {"encoder": {"name": "x", "freeze": True}}})
    assert flat == {"train.lr": 0.1, "train.betas": "[0.9, 0.98]", "train.augment.gain_db": "None",
                    "train.augment.prob": 1.0, "model.encoder.name": "x", "model.encoder.freeze": True}


class _FakeTracker:
    def __init__(self) -> None:
        self.finished = 0

    def finish(self) -> None:
        self.finished += 1


class _FakeAccelerator:
    def __init__(self) -> None:
        self.log_with = ["tensorboard"]
        self.trackers = [_FakeTracker()]
        self.logged: list[tuple[dict, int]] = []
        self.started: tuple | None = None

    def init_trackers(self, project, config=None, init_kwargs=None) -> None:
        self.started = (project, config, init_kwargs)

    def log(self, values, step=None) -> None:
        self.logged.append((values, step))


def test_metrics_log_hands_each_record_to_the_trackers_and_finishes_them_once(tmp_path: Path) -> None:
    from nue_core.config import ModelConfig
    from tests.conftest import tiny_config

    acc = _FakeAccelerator()
    trackers = Trackers(acc, "proj", TrainConfig(lr=0.5), ModelConfig.from_dict(tiny_config()), tmp_path / "run-7")
    project, hparams, init_kwargs = acc.started
    assert project == "proj" and hparams["train.lr"] == 0.5 and "model.encoder.name" in hparams
    assert init_kwargs["wandb"]["name"] == init_kwargs["mlflow"]["run_name"] == "run-7"
    log = MetricsLog(tmp_path / "run-7", trackers)
    log.log("train", 3, {"loss": 1.5, "bad_steps": 0, "note": "text", "flag": True})
    log.log("valid", 3, {"cer": 0.25})
    assert acc.logged == [({"train/loss": 1.5, "train/bad_steps": 0}, 3), ({"valid/cer": 0.25}, 3)]
    assert read_metrics(tmp_path / "run-7")["train"][0]["note"] == "text"  # the file keeps everything
    log.close()
    log.close()
    assert acc.trackers[0].finished == 1


def _scalars(events: Path, tag: str) -> dict[int, float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    found: dict[int, float] = {}
    for folder in sorted({p.parent for p in events.rglob("events.out.tfevents.*")}):
        acc = EventAccumulator(str(folder))
        acc.Reload()
        if tag in acc.Tags()["scalars"]:
            found.update({e.step: e.value for e in acc.Scalars(tag)})
    return found


@pytest.mark.slow
def test_every_tracker_gets_what_metrics_jsonl_holds(tone_data, tmp_path: Path, monkeypatch) -> None:
    wandb = pytest.importorskip("wandb")
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    store = tmp_path / "mlruns"  # a file store: what mlflow-skinny can write without a server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    model_yaml, train_manifest, valid_manifest = tone_data
    run = tmp_path / "run"
    config = TrainConfig(**SETTINGS, report_to=["tensorboard", "wandb", "mlflow"], tracker_project="nue-test")
    train(model_yaml, train_manifest, valid_manifest, run, config, say=lambda *a: None)
    metrics = read_metrics(run)
    expected = {r["step"]: r["loss"] for r in metrics["train"]}
    assert sorted(expected) == [1, 2, 3] and [r["step"] for r in metrics["valid"]] == [3]

    events = _scalars(run / "tensorboard" / "nue-test", "train/loss")
    assert events == pytest.approx(expected)
    assert _scalars(run / "tensorboard" / "nue-test", "valid/cer") == pytest.approx({3: metrics["valid"][0]["cer"]})

    client = mlflow.tracking.MlflowClient(tracking_uri=store.as_uri())
    (found,) = client.search_runs([client.get_experiment_by_name("nue-test").experiment_id])
    assert found.info.run_name == "run" and found.info.status == "FINISHED"
    history = {m.step: m.value for m in client.get_metric_history(found.info.run_id, "train/loss")}
    assert history == pytest.approx(expected)
    assert found.data.params["train.lr"] == str(config.lr)

    # W&B offline: one run file (its records are protobuf; wandb has no stable reader for them, so
    # the metric and setting names are looked for in its bytes)
    (record,) = (run / "wandb").glob("offline-run-*/run-*.wandb")
    data = record.read_bytes()
    assert all(name in data for name in (b"train/loss", b"train/lr", b"valid/cer", b"train.lr", b"nue-test"))
    assert wandb.run is None  # finished, not left open
