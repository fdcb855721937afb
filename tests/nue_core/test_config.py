import pytest
import yaml

from nue_core.config import ComponentSpec, ModelConfig
from nue_core.errors import ConfigError


def _cfg(**extra):
    return {"encoder": {"name": "hubert", "checkpoint": "x"}, "bridge": "conv", "decoder": {"name": "gpt-neox"}, **extra}


def test_shorthand_and_plugin_options_are_kept():
    cfg = ModelConfig.from_dict(_cfg())
    assert cfg.bridge.name == "conv" and cfg.bridge.options == {}
    assert cfg.encoder.options == {"checkpoint": "x"}
    assert cfg.encoder.trainable is True and cfg.decoder.lora is None


def test_yaml_round_trip(tmp_path):
    cfg = ModelConfig.from_dict(_cfg(ctc_weight=0.3, prompt={"prefix": "<s>", "postfix": "[SEP]"}))
    cfg = cfg.model_copy(update={"decoder": ComponentSpec(name="gpt-neox", lora={"r": 4})})
    path = tmp_path / "m.yaml"
    cfg.save(path)
    again = ModelConfig.load(path)
    assert again == cfg
    assert again.decoder.lora.r == 4 and again.prompt.postfix == "[SEP]"


def test_unknown_top_level_key_names_it_and_lists_allowed():
    with pytest.raises(ConfigError) as err:
        ModelConfig.from_dict(_cfg(ctc_wieght=0.3), source="m.yaml")
    text = str(err.value)
    assert "m.yaml" in text and "ctc_wieght" in text and "ctc_weight" in text and "allowed" in text


def test_unknown_lora_key_lists_lora_fields():
    with pytest.raises(ConfigError) as err:
        ModelConfig.from_dict(_cfg(decoder={"name": "gpt-neox", "lora": {"rank": 8}}))
    text = str(err.value)
    assert "decoder.lora.rank" in text and "alpha" in text and "target_modules" in text


def test_wrong_type_names_field():
    with pytest.raises(ConfigError, match="ctc_weight"):
        ModelConfig.from_dict(_cfg(ctc_weight="lots"))
    with pytest.raises(ConfigError, match="ctc_weight"):
        ModelConfig.from_dict(_cfg(ctc_weight=-1))


def test_missing_part_is_named():
    with pytest.raises(ConfigError, match="decoder"):
        ModelConfig.from_dict({"encoder": "hubert", "bridge": "conv"})


def test_load_reports_file_problems(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        ModelConfig.load(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("encoder: [unclosed")
    with pytest.raises(ConfigError, match="bad.yaml"):
        ModelConfig.load(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text(yaml.safe_dump(3))
    with pytest.raises(ConfigError, match="mapping"):
        ModelConfig.load(scalar)
