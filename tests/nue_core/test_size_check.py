"""Size fields, estimates and the memory there is: pure functions, no model is built here."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nue_core.errors import ConfigError
from nue_core.size_check import (
    COUNT_KEYS,
    FFN_KEYS,
    LAYER_KEYS,
    MAX_LAYERS,
    VOCAB_KEYS,
    WIDTH_KEYS,
    ModelTooLargeError,
    Scope,
    available_memory,
    check_built,
    check_estimate,
    check_size_fields,
    count_bytes,
    human_bytes,
)
from tests.robustness.test_resource_limits import last_json, run_capped

SIZE_KEYS = sorted(LAYER_KEYS | WIDTH_KEYS | FFN_KEYS | VOCAB_KEYS | COUNT_KEYS)
sizes = st.one_of(st.integers(-10**20, 10**20), st.booleans(), st.floats(allow_nan=True), st.none(), st.text(max_size=3))
# Other keys: any text but the path separators of the messages (".", ":", "["), which the test
# below splits on to find the named field (real config keys never hold them).
keys = st.one_of(st.sampled_from(SIZE_KEYS),
                 st.text(st.characters(blacklist_characters=".:[]"), min_size=1, max_size=6))
options = st.recursive(st.dictionaries(keys, sizes, max_size=4),
                       lambda inner: st.dictionaries(keys, st.one_of(sizes, inner), max_size=4), max_leaves=12)


@settings(max_examples=150, deadline=None)
@given(options)
def test_generated_options_pass_or_fail_naming_a_field_that_is_there(opts):
    """150 generated option mappings (nested up to 12 leaves, size keys among others, any value)."""
    try:
        scopes = check_size_fields("decoder", opts)
    except ConfigError as exc:
        path = str(exc).split(":")[0].split("[")[0].split(".")[1:]
        node = opts
        for part in path:  # the named field exists along that path
            assert isinstance(node, dict) and part in node, (str(exc), opts)
            node = node[part]
        return
    assert all(s.layers <= MAX_LAYERS * len(LAYER_KEYS) and s.lower_bound() >= 0 for s in scopes)


def test_fields_are_named_with_their_path_and_zero_layers_are_the_plugins_call():
    with pytest.raises(ConfigError, match=r"^decoder.config.num_hidden_layers: must be a positive whole number, got 0$"):
        check_size_fields("decoder", {"config": {"num_hidden_layers": 0}})
    assert check_size_fields("encoder", {"num_layers": 0}, typed=frozenset({"num_layers"}))[0].layers == 0
    with pytest.raises(ConfigError, match=r"^encoder.num_layers: must be a whole number >= 0, got -1$"):
        check_size_fields("encoder", {"num_layers": -1}, typed=frozenset({"num_layers"}))
    with pytest.raises(ConfigError, match=r"^bridge.kernel_sizes\[1\]: must be a positive whole number, got 0$"):
        check_size_fields("bridge", {"kernel_sizes": [4, 0]})
    with pytest.raises(ModelTooLargeError, match=r"^bridge.strides: 10,001 entries \(one per layer\) is beyond"):
        check_size_fields("bridge", {"strides": [1] * (MAX_LAYERS + 1)})
    assert check_size_fields("bridge", {"hidden_dim": None, "layer": -1}) == [Scope("bridge")]  # unset; an index


def test_the_estimate_is_a_lower_bound_and_names_the_largest_part():
    scope = Scope("decoder.config", layers=36, width=2816, ffn=11264, vocab=32000)  # rinna/japanese-gpt-neox-3.6b
    assert 2.5e9 < scope.lower_bound() < 3.6e9  # the real model has 3.6e9
    check_estimate({"decoder": [scope]}, {"decoder": "float16"}, available=8 * 10**9)  # 5.3 GB in float16 fits
    with pytest.raises(ModelTooLargeError, match=r"^decoder.config: ~2.7e\+09 parameters \(10.6 GB in float32\) "
                                                 r"exceeds the available memory \(8 GB\); make the model smaller$"):
        check_estimate({"decoder": [scope], "bridge": [Scope("bridge")]}, {}, available=8 * 10**9)
    check_estimate({"decoder": [scope]}, {}, available=None)  # unknown memory: no refusal


def test_built_parts_are_counted_with_their_dtypes_and_shared_tensors_once():
    with torch.device("meta"):
        tied = torch.nn.Linear(1000, 1000, dtype=torch.float16)
        both = torch.nn.ModuleList([tied, tied])
    assert count_bytes(both) == (1_001_000, 2_002_000)
    check_built({"decoder": both}, available=2_002_000)
    with pytest.raises(ModelTooLargeError, match=r"needs 2 MB .*decoder: 1e\+06 parameters, 2 MB\), more than the "
                                                 r"available memory \(2 MB\)"):
        check_built({"decoder": both}, available=2_001_999)


def test_available_memory_respects_an_address_space_limit():
    assert available_memory() > 0
    room = last_json(run_capped("""
        import json
        from nue_core.size_check import available_memory
        print(json.dumps(available_memory()))
    """, cap=3 * 2**30, timeout=60))
    assert 0 < room < 3 * 2**30


def test_human_bytes_is_decimal_and_never_overflows():
    assert [human_bytes(n) for n in (512, 2_500_000, 16e12, 10**400)] == ["512 B", "2.5 MB", "16 TB", "1e+285 PB"]
