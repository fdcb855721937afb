from pathlib import Path

import pytest

import nue_s3prl.encoders
from nue_core import config_reference
from nue_core.config_reference import TRAIN_BEGIN, TRAIN_END, render, render_train_settings, splice
from nue_core.train.config import TrainConfig

DOCS = Path(__file__).resolve().parents[2] / "docs"
STALE = "is stale: run `python -m nue_core.config_reference --write`"


def test_docs_config_reference_is_current():
    assert (DOCS / "config.md").read_text(encoding="utf-8") == render(), f"docs/config.md {STALE}"


def test_docs_training_settings_are_current():
    text = (DOCS / "training.md").read_text(encoding="utf-8")
    assert splice(text, render_train_settings()) == text, f"the TrainConfig block of docs/training.md {STALE}"


def test_reference_lists_every_first_party_component_and_field():
    text = render()
    for name in ("hubert", "wav2vec2", "conv", "qformer", "ctc-compress", "gpt-neox", "llama", "hf-causal-lm",
                 "s3prl", "s3prl:hubert", "s3prl:wav2vec2", "fbank-transformer"):
        assert f"### `{name}`" in text
    for field in ("ctc_weight", "kernel_sizes", "window_frames", "target_modules", "normalize_waveform"):
        assert f"`{field}`" in text


def test_training_reference_lists_every_train_and_augment_field():
    block = render_train_settings()
    for name in TrainConfig.model_fields:
        assert f"| `{name}` |" in block
    for name in TrainConfig.model_fields["augment"].annotation.model_fields:
        assert f"| `{name}` |" in block


@pytest.mark.parametrize("s3prl", ["installed", "missing"])
@pytest.mark.parametrize("hub", ["usable", "without torchaudio"])
def test_reference_does_not_depend_on_installed_extras(monkeypatch, s3prl, hub):
    # the same text whatever is installed: README's install has no s3prl, CI's second stage has it
    expected = (DOCS / "config.md").read_text(encoding="utf-8")
    missing = None if s3prl == "installed" else 's3prl is not installed; pip install "nue-asr[s3prl]"'
    monkeypatch.setattr(nue_s3prl.encoders, "s3prl_missing_reason", lambda import_it=True: missing)
    monkeypatch.setattr(nue_s3prl.encoders, "hub_unavailable_reason",
                        lambda: None if hub == "usable" else "torchaudio does not load")
    plugins = config_reference.first_party_plugins()
    s3prl_entries = [e for e in plugins.registry.entries("encoder") if e.plugin == "nue_s3prl"]
    assert len(s3prl_entries) == 3
    assert any(e.unavailable for e in s3prl_entries) == (s3prl == "missing" or hub != "usable")
    assert render(plugins) == expected


def test_splice_replaces_only_the_marked_block():
    text = f"intro\n{TRAIN_BEGIN}\nold\n{TRAIN_END}\noutro\n"
    assert splice(text, f"{TRAIN_BEGIN}\nnew\n{TRAIN_END}") == f"intro\n{TRAIN_BEGIN}\nnew\n{TRAIN_END}\noutro\n"
    with pytest.raises(ValueError, match="markers"):
        splice("no markers here", "x")


def test_write_updates_stale_files_only(tmp_path):
    (tmp_path / "config.md").write_text("stale", encoding="utf-8")
    (tmp_path / "training.md").write_text((DOCS / "training.md").read_text(encoding="utf-8"), encoding="utf-8")
    assert config_reference.write(tmp_path) == [tmp_path / "config.md"]
    assert (tmp_path / "config.md").read_text(encoding="utf-8") == render()
    assert config_reference.write(tmp_path) == []
