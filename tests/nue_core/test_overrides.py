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


def test_values_that_expand_or_nest_without_end_are_refused():
    bomb = "{" + ", ".join(["a: &a [x, x, x, x, x, x, x, x, x]"] + [
        f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]" for p, n in zip("abcdefgh", "bcdefghi")]) + "}"
    with pytest.raises(ConfigError, match=r"override 'decoder.config=\{a: &a .*\.\.\.': value is not valid YAML "
                                          r"\(aliases expand this document"):
        parse_override("decoder.config=" + bomb)
    with pytest.raises(ConfigError, match=r"more than 100 aliases"):
        parse_override("x=[" + ", ".join(["&a 1"] + ["*a"] * 101) + "]")
    with pytest.raises(ConfigError, match=r"nested more than 64 levels deep"):
        parse_override("x=" + "[" * 5000 + "]" * 5000)  # RecursionError inside PyYAML before


def test_yes_is_still_read_as_yaml_and_refused_where_a_number_is_meant():
    from nue_core.train.config import TrainConfig

    key, value = parse_override("lr=yes")
    assert (key, value) == ("lr", True)  # YAML 1.1, as before: the config model refuses it, naming lr
    with pytest.raises(ConfigError, match=r"lr: a boolean is not a number"):
        TrainConfig.from_dict(set_dotted({}, key, value))
