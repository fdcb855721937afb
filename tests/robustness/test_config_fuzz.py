"""Fuzzed model configs and manifests: validation errors naming the field or line, never a deep traceback."""

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nue_core.composer import compose
from nue_core.config import ModelConfig
from nue_core.data.manifest import ManifestError, read_manifest
from nue_core.errors import NueError
from tests.conftest import tiny_config

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True),
                    st.text(max_size=20), st.just("ünïcödé 日本語"))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=3)), max_leaves=8)
KEYS = ["encoder", "bridge", "decoder", "prompt", "ctc_weight", "max_audio_seconds", "ctc_wieght", "décodeur"]
PART_KEYS = ["name", "trainable", "freeze", "lora", "config", "checkpoint", "kernel_sizes", "strides", "tokenizer",
             "layer", "mode", "num_queries", "merge", "nonsense"]

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.dictionaries(st.sampled_from(KEYS), values, max_size=6))
def test_random_top_level_configs_fail_cleanly(data):
    try:
        ModelConfig.from_dict(data, source="fuzz.yaml")
    except NueError as exc:
        assert "fuzz.yaml" in str(exc)


@FUZZ
@given(part=st.sampled_from(["encoder", "bridge", "decoder"]), key=st.sampled_from(PART_KEYS), value=values)
def test_random_part_options_fail_with_named_errors(part, key, value):
    cfg = tiny_config()
    cfg[part][key] = value
    try:
        model = compose(cfg, describe=True)
    except NueError as exc:
        text = str(exc)
        assert part in text or key in text, text
    else:
        assert model is not None


@FUZZ
@given(st.lists(st.one_of(st.dictionaries(st.sampled_from(["audio", "text", "duration", "speaker", "id", "extra"]), values, max_size=5),
                          values, st.text(max_size=30)), min_size=1, max_size=5))
def test_fuzzed_jsonl_manifests_name_the_line(tmp_path_factory, lines):
    path = tmp_path_factory.mktemp("m") / "m.jsonl"
    path.write_text("\n".join(json.dumps(x) if not isinstance(x, str) else x for x in lines) + "\n", encoding="utf-8")
    try:
        read_manifest(path)
    except ManifestError as exc:
        assert f"{path}:" in str(exc)
