"""One call from a model source and manifests to a trained run folder (what ``nue train`` does)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence, Union

import torch

from nue_core.checkpoint import CONFIG_FILE
from nue_core.data.manifest import manifest_paths
from nue_core.errors import ConfigError, writing
from nue_core.model import SpeechLM
from nue_core.train.config import TrainConfig
from nue_core.train.data import UtteranceSet
from nue_core.train.logs import ProgressFactory
from nue_core.train.provenance import record_start
from nue_core.train.run_folder import check_run_folder, clear_run_folder, remove_stale_temporaries
from nue_core.train.trainer import Trainer, TrainResult, make_accelerator, seed_everything

# One manifest, a comma list, or several (``nue train --train a.jsonl --train b.jsonl``).
Manifests = Union[str, Path, Sequence[Union[str, Path]]]


def build_training_model(source: str | Path, model_overrides: dict[str, Any] | None = None, seed: int = 0) -> SpeechLM:
    """The model to train: a saved model folder (continue from its weights), a YAML file or a preset.

    Args:
        source: model folder, model YAML path or preset name.
        model_overrides: dotted overrides of the model config (``{"ctc_weight": 0.5}``); not
            allowed for a saved folder, whose weights fix the architecture.
        seed: seeds the random initialisation, so two runs with one seed start identical.
    """
    from nue_core.checkpoint import load_model_folder
    from nue_core.composer import compose, resolve_config
    from nue_core.model_source import resolve_source
    from nue_core.overrides import set_dotted
    from nue_core.plugins import get_plugins

    seed_everything(seed)
    found = resolve_source(source, get_plugins(), accept=("folder", "preset", "config_file"))
    kind, path = (found.kind, found.path) if found is not None else (None, None)
    if kind == "folder" and path is not None and (path / CONFIG_FILE).is_file():
        if model_overrides:
            raise ConfigError(f"{path} is a saved model: its architecture is fixed; model overrides are not allowed")
        return load_model_folder(path).train()
    # Any other folder is no model to train: resolve_config names what it accepts.
    config = resolve_config(str(source))
    # Relative paths inside a model YAML (a tokenizer file ...) are relative to the YAML.
    base_dir = path.parent if kind == "config_file" and path is not None else None
    if model_overrides:
        from nue_core.config import ModelConfig

        data = config.model_dump(exclude_none=True)
        for key, value in model_overrides.items():
            data = set_dotted(data, key, value)
        config = ModelConfig.from_dict(data, source=f"{source} with overrides")
    return compose(config, base_dir=base_dir).train()


def load_data(
    config: TrainConfig, model: SpeechLM, train_manifest: Manifests, valid_manifest: Manifests | None, say: Any = print
) -> tuple[UtteranceSet, UtteranceSet | None]:
    """Read and check the manifests (every entry once; bad ones stop the run or are skipped).

    Args:
        train_manifest, valid_manifest: a manifest, a comma list or a sequence of them; several
            make one set (``scan_manifests``: ids must stay unique across them).
    """
    limit = config.max_audio_seconds or model.config.max_audio_seconds
    sets = []
    for manifests in (train_manifest, valid_manifest):
        if manifests is None:
            sets.append(None)
            continue
        data, report = UtteranceSet.from_manifest(manifests, model.sample_rate, limit, config.skip_bad,
                                                  config.cache_audio, config.check_audio)
        name = " + ".join(manifest_paths(manifests))
        if report.problems:
            say(report.summary(name, limit=20) + "\n  (skipped: --skip-bad)")
        minutes = sum(data.durations) / 60
        say(f"{name}: {len(data)} utterances, {minutes:.1f} min of audio" + (f", {len(report.problems)} skipped" if report.problems else ""))
        sets.append(data)
    return sets[0], sets[1]


def train(
    model_source: str | Path, train_manifest: Manifests, valid_manifest: Manifests | None, run_dir: Path,
    config: TrainConfig, resume: bool = False, model_overrides: dict[str, Any] | None = None,
    say: Any = print, *, overwrite: bool = False, progress: ProgressFactory | None = None,
) -> TrainResult:
    """Build the model, check the data, train (resuming when asked), return how it ended.

    Args:
        run_dir: the run folder. One that already holds a run needs ``resume`` (continue it) or
            ``overwrite`` (delete its files and start over; refused when the folder holds
            anything a run does not write): see ``nue_core.train.run_folder``.
        progress: shows the steps (``nue train`` passes its rich bar); default: messages as lines.

    Each start records what it ran with in ``run_dir/provenance/`` (``nue_core.train.provenance``).

    Raises:
        RunExistsError: ``run_dir`` holds a run and neither ``resume`` nor ``overwrite`` is set.
    """
    run_dir = Path(run_dir)
    # Before anything slow (building the model and reading the data can take minutes).
    check_run_folder(run_dir, resume, overwrite, model_source)
    acc = make_accelerator(config, run_dir)
    if not acc.is_main_process:
        say = _quiet
    if overwrite:
        if acc.is_main_process:
            clear_run_folder(run_dir)
        acc.wait_for_everyone()
    model = build_training_model(model_source, model_overrides, config.seed)
    train_set, valid_set = load_data(config, model, train_manifest, valid_manifest, say)
    trainer = Trainer(model, config, train_set, valid_set, run_dir, accelerator=acc, progress=progress)
    if trainer.acc.is_main_process:
        with writing(run_dir):
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "train.yaml").write_text(config.to_yaml(), encoding="utf-8")
            model.config.save(run_dir / "model.yaml")
            _clean_leftovers(run_dir, say)
            record_start(run_dir, config, model.config, resume, trainer.acc.num_processes)
    if resume:
        found = trainer.resume(say=say)
        say(f"resumed from step {trainer.state.step}" if found else "no checkpoint to resume from; starting fresh")
    if config.warmup_steps > 0 and config.warmup_steps >= trainer.total_steps:
        say(f"warning: warmup_steps={config.warmup_steps} >= {trainer.total_steps} training steps: "
            "the whole run is warm-up (the learning rate only rises)")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    say(f"training {trainable / 1e6:.2f}M parameters for {trainer.total_steps} steps "
        f"on {trainer.acc.num_processes} process(es), device {trainer.acc.device}")
    torch.set_float32_matmul_precision("high")
    result = trainer.fit()
    if result.skipped_items:
        count = len(result.skipped_items)
        shown = "\n".join(f"  {line}" for line in result.skipped_items[:20])
        more = f"\n  ... and {count - 20} more" if count > 20 else ""
        say(f"{count} item{'s' if count != 1 else ''} could not be read during training and were skipped "
            f"(--skip-bad):\n{shown}{more}")
    return result


def _clean_leftovers(run_dir: Path, say: Any) -> None:
    """Remove what saves cut short by a crash left behind (``.step-*.tmp-*`` ...), saying so in one line."""
    removed = remove_stale_temporaries(run_dir)
    if removed:
        say(f"removed {len(removed)} unfinished save(s) left by an interrupted run: {', '.join(removed[:5])}"
            + (f" and {len(removed) - 5} more" if len(removed) > 5 else ""))


def _quiet(*args: Any, **kwargs: Any) -> None:
    """Ranks other than the main one print nothing."""
