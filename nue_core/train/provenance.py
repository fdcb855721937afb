"""What a run was started with, recorded in its folder: ``RUN_DIR/provenance/start-NNN.yaml``.

One file per start (the first, then one per ``--resume``), never overwritten, each written
atomically (a temporary file renamed into place). Each holds: when and how the run started, the
resolved train and model configs, the versions of python, torch, transformers, accelerate, peft,
nue-asr and every installed nue plugin's distribution, the machine (CPU and its flags, GPUs), and
the git state (commit, branch, changed files) of the folder the run was launched from, and of the
nue-asr source when that is another checkout.
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml


PROVENANCE_DIR = "provenance"
_PACKAGES = ("torch", "transformers", "accelerate", "peft", "nue-asr")
NOT_GIT = "not a git checkout"
MAX_DIRTY = 200  # changed files listed; a checkout with generated data can have thousands


def record_start(run_dir: Path, train_config: Any, model_config: Any, resumed: bool, processes: int = 1) -> Path:
    """Write the next ``provenance/start-NNN.yaml`` of ``run_dir`` (call on the main process).

    Args:
        train_config: the resolved ``TrainConfig``.
        model_config: the resolved ``ModelConfig``.
        resumed: the run continues from a checkpoint (``--resume``).
        processes: the number of training processes.

    Returns:
        The file written.

    Raises:
        OutputError: it could not be written (names the file).
    """
    from nue_core.inference.writers import write_atomic

    folder = Path(run_dir) / PROVENANCE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    record = {
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "resumed": resumed,
        "command": " ".join(sys.argv),
        "working_directory": os.getcwd(),
        "processes": processes,
        "versions": versions(),
        "machine": machine(),
        "git": git_state(Path.cwd()),
        "train_config": train_config.model_dump(mode="json"),
        "model_config": model_config.model_dump(mode="json", exclude_none=True),
    }
    source = Path(__file__).resolve().parents[2]
    source_git = git_state(source)
    if isinstance(source_git, dict) and source_git != record["git"]:
        record["nue_asr_git"] = source_git  # an editable install elsewhere: its code ran too
    path = _next_free(folder)
    write_atomic(path, yaml.safe_dump(record, sort_keys=False, allow_unicode=True))
    return path


def _next_free(folder: Path) -> Path:
    """``start-NNN.yaml`` one past the highest there (a gap left by a removed file is not reused)."""
    taken = [int(p.stem[len("start-"):]) for p in folder.glob("start-*.yaml") if p.stem[len("start-"):].isdigit()]
    return folder / f"start-{max(taken, default=0) + 1:03d}.yaml"


def versions() -> dict[str, Any]:
    """python and the packages that decide a run's numbers, and each installed nue plugin's distribution."""
    found: dict[str, Any] = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    plugins = {}
    for ep in metadata.entry_points(group="nue"):
        dist = ep.dist
        plugins[ep.name] = f"{dist.name} {dist.version}" if dist is not None else ep.value
    found["plugins"] = dict(sorted(plugins.items()))
    return found


def machine() -> dict[str, Any]:
    """The CPU (model, cores, flags line), the GPUs by name, the OS."""
    import torch

    from nue_core.dtypes import cpu_flags, flags_summary

    flags = cpu_flags()
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    return {
        "platform": platform.platform(),
        "cpu": _cpu_model() or platform.processor() or platform.machine(),
        "cpu_cores": os.cpu_count(),
        "cpu_flags_summary": flags_summary(flags),
        "cpu_flags": " ".join(sorted(flags)),
        "gpus": gpus,
    }


def _cpu_model(path: str = "/proc/cpuinfo") -> str:
    try:
        for line in Path(path).read_text().splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip() == "model name":
                return value.strip()
    except OSError:
        pass
    return ""


def git_state(folder: Path) -> dict[str, Any] | str:
    """Commit, branch and changed files (``git status --porcelain``) of the checkout holding
    ``folder``, or ``NOT_GIT`` (with the reason when git itself is missing)."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=30, check=True)
        return done.stdout

    try:
        commit = git("rev-parse", "HEAD").strip()
    except FileNotFoundError:
        return f"{NOT_GIT} (git is not installed)"
    except subprocess.CalledProcessError as exc:
        if "not a git repository" in exc.stderr:
            return NOT_GIT
        # a repository without a commit yet, one git refuses to read (another owner) ...: say so
        return f"{NOT_GIT} (git: {exc.stderr.strip().splitlines()[0] if exc.stderr.strip() else exc})"
    except (subprocess.TimeoutExpired, OSError) as exc:
        return f"{NOT_GIT} (git: {exc})"
    try:
        branch = git("rev-parse", "--abbrev-ref", "HEAD").strip()
        status = git("status", "--porcelain", "--untracked-files=normal").splitlines()
        root = git("rev-parse", "--show-toplevel").strip()
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        return {"commit": commit, "error": f"git status failed: {exc}"}
    dirty = [line[3:] for line in status if len(line) > 3]
    shown = dirty[:MAX_DIRTY] + ([f"... and {len(dirty) - MAX_DIRTY} more"] if len(dirty) > MAX_DIRTY else [])
    return {"root": root, "commit": commit, "branch": branch, "dirty": shown}

