import pytest

from nue_core.errors import ConfigError
from nue_core.overrides import get_dotted, parse_override, set_dotted


def test_parse_reads_yaml_values():
    assert parse_override("decoder.lora.r=8") == ("decoder.lora.r", 8)
    assert parse_override("bridge.strides=[2, 2]") == ("bridge.strides", [2, 2])
    assert parse_override("encoder.trainable=false") == ("encoder.trainable", False)


def test_parse_rejects_missing_equals():
    with pytest.raises(ConfigError, match="key.path=value"):
        parse_override("decoder.lora.r")


def test_set_dotted_expands_shorthand_and_copies():
    data = {"encoder": "hubert"}
    out = set_dotted(data, "encoder.layer", 3)
    assert out == {"encoder": {"name": "hubert", "layer": 3}} and data == {"encoder": "hubert"}
    assert get_dotted(out, "encoder.layer") == 3 and get_dotted(out, "encoder.nope") is None


def test_set_dotted_refuses_to_descend_into_a_scalar():
    with pytest.raises(ConfigError, match="not a mapping"):
        set_dotted({"ctc_weight": 0.1}, "ctc_weight.x", 1)
