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


@pytest.mark.parametrize("key, value, field", [
    ("ctc_weight", True, "ctc_weight"),
    ("decode", {"extra_tokens": False}, "decode.extra_tokens"),
    ("decode", {"tokens_per_second": True}, "decode.tokens_per_second"),
    ("decoder", {"name": "gpt-neox", "lora": {"r": True}}, "decoder.lora.r"),
    ("decoder", {"name": "gpt-neox", "lora": {"alpha": False}}, "decoder.lora.alpha"),  # 0.0 also fails `> 0`
])
def test_a_boolean_is_never_read_as_a_number(key, value, field):
    with pytest.raises(ConfigError) as err:
        ModelConfig.from_dict(_cfg(**{key: value}), source="m.yaml")
    text = str(err.value)
    assert f"{field}: a boolean is not a number" in text and "yes/no/on/off" in text, text


def test_yaml_yes_for_a_number_is_refused_in_a_file_and_booleans_stay_booleans(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("encoder: {name: hubert, trainable: no}\nbridge: conv\ndecoder: gpt-neox\nmax_audio_seconds: yes\n")
    with pytest.raises(ConfigError, match="max_audio_seconds: a boolean is not a number"):
        ModelConfig.load(path)
    path.write_text("encoder: {name: hubert, trainable: no}\nbridge: conv\ndecoder: gpt-neox\n")
    assert ModelConfig.load(path).encoder.trainable is False


def test_train_settings_refuse_booleans_for_numbers():
    from nue_core.train.config import TrainConfig

    for data, field in (({"lr": True}, "lr"), ({"betas": [0.9, True]}, "betas.1"), ({"max_steps": True}, "max_steps"),
                        ({"augment": {"speed_range": [True, 1.1]}}, "augment.speed_range.0")):
        with pytest.raises(ConfigError, match=rf"{field}: a boolean is not a number"):
            TrainConfig.from_dict(data)
    assert TrainConfig.from_dict({"progress": False, "lr": 0.001}).progress is False


def test_yaml_files_that_expand_or_cannot_be_read_are_config_errors(tmp_path, monkeypatch):
    import nue_core.config as config

    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi")))
    with pytest.raises(ConfigError, match=r"bomb.yaml: not valid YAML: aliases expand this document"):
        ModelConfig.load(bomb)
    date = tmp_path / "date.yaml"
    date.write_text("encoder: hubert\nbridge: conv\ndecoder: {name: gpt-neox, released: 2024-13-45}\n")
    with pytest.raises(ConfigError, match=r"date.yaml: not valid YAML: cannot read '2024-13-45' \(month must be"):
        ModelConfig.load(date)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("prompt: {prefix: 'caf\u00e9'}\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin.yaml: not UTF-8 text"):
        ModelConfig.load(latin)
    monkeypatch.setattr(config, "MAX_YAML_BYTES", 10)
    with pytest.raises(ConfigError, match=r"date.yaml: .* too large for a config file"):
        ModelConfig.load(date)


def test_unknown_key_lists_the_fields_of_the_model_validated_even_when_names_collide():
    """Two plugins' options classes may share a class name: the error lists the right one's fields."""
    from pydantic import BaseModel, ConfigDict

    from nue_core.config import validate

    def options(*fields):
        return type("Options", (BaseModel,), {"__annotations__": dict.fromkeys(fields, int),
                                              "model_config": ConfigDict(extra="forbid")})

    first, second = options("width"), options("depth")
    with pytest.raises(ConfigError, match="wdith: unknown key; allowed: width$"):
        validate(first, {"wdith": 1}, "a.yaml")
    with pytest.raises(ConfigError, match="dpth: unknown key; allowed: depth$"):
        validate(second, {"dpth": 1}, "b.yaml")
    assert validate(first, {"width": 3}, "a.yaml").width == 3
