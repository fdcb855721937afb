"""Every preset in registry.yaml validates and composes offline, on the meta device (nothing downloaded)."""

import pytest
import yaml

from nue_core.composer import compose
from nue_core.plugins import default_registry_file

PRESETS = sorted(yaml.safe_load(default_registry_file().read_text())["presets"])


@pytest.mark.parametrize("name", PRESETS)
def test_preset_composes_offline_on_meta(name):
    model = compose(name, describe=True)
    assert all(p.is_meta for p in model.parameters())
    assert model.bridge.in_dim == model.encoder.output_dim and model.bridge.out_dim == model.decoder.embed_dim


def test_registry_names_the_papers_models():
    assert {"nue-asr-paper", "nue-asr-ctc-compress", "english", "multilingual", "tiny"} <= set(PRESETS)
    checkpoints = yaml.safe_load(default_registry_file().read_text())["checkpoints"]
    assert checkpoints["nue-asr"] == "rinna/nue-asr"
