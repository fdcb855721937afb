"""resolve_source: one order of kinds for every caller; each caller picks the kinds it accepts."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from nue_core.model_source import ModelSource, resolve_source

PLUGINS = SimpleNamespace(presets={"tiny": {}}, checkpoints={"nue-asr": "rinna/nue-asr"})


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_each_kind(in_tmp: Path) -> None:
    (in_tmp / "folder").mkdir()
    (in_tmp / "model.yaml").write_text("{}")
    assert resolve_source("default", PLUGINS) == ModelSource("default", "default")
    assert resolve_source("folder", PLUGINS) == ModelSource("folder", "folder", path=Path("folder"))
    assert resolve_source("tiny", PLUGINS) == ModelSource("preset", "tiny", name="tiny")
    assert resolve_source("model.yaml", PLUGINS) == ModelSource("config_file", "model.yaml", path=Path("model.yaml"))
    assert resolve_source("nue-asr", PLUGINS) == ModelSource("checkpoint", "nue-asr", name="nue-asr",
                                                             repo_id="rinna/nue-asr")
    assert resolve_source("org/name", PLUGINS) == ModelSource("hub", "org/name", name="org/name", repo_id="org/name")
    assert resolve_source("nothing-here", PLUGINS) is None


def test_local_wins_and_accept_limits_the_kinds(in_tmp: Path) -> None:
    (in_tmp / "tiny").mkdir()  # a folder named like a preset: the folder, unless folders are not wanted
    assert resolve_source("tiny", PLUGINS).kind == "folder"
    assert resolve_source("tiny", PLUGINS, accept=("preset", "config_file")).kind == "preset"
    (in_tmp / "org").mkdir()
    (in_tmp / "org" / "name").write_text("{}")  # an existing path is never sent to the hub
    assert resolve_source("org/name", PLUGINS, accept=("hub",)) is None
    assert resolve_source(Path("org2/name"), PLUGINS) is None  # a Path is never a hub id
    assert resolve_source("default", PLUGINS, accept=("preset", "config_file")) is None
