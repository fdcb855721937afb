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


# ---------------------------------------------------------------- YAML and size fields: every size bounded
# Each property runs in a child process under a memory cap (``run_capped``): a regression that
# expands an alias bomb or builds a million layers fails the test instead of exhausting the machine.

from tests.robustness.test_resource_limits import last_json, run_capped  # noqa: E402

ALIAS_CASES = 60
SIZE_CASES = 60


def alias_growth(fan: int, depth: int, leaf: str) -> int:
    """Nodes the aliases add to the generated document ``l0: &l0 [leaf x fan], l1: &l1 [*l0 x fan], ...``."""
    leaf_nodes = {"{k: v}": 3}.get(leaf, 1)  # a flow mapping is itself plus a key and a value
    sizes = [1 + fan * leaf_nodes]
    for _ in range(1, depth):
        sizes.append(1 + fan * sizes[-1])
    expanded = 1 + sum(1 + size for size in sizes)  # the root mapping, each key and its list
    distinct = 1 + 2 * depth + fan * leaf_nodes  # lists of aliases add no node of their own
    return expanded - distinct


def alias_documents_property() -> None:
    """Child side of ``test_generated_alias_documents_are_bounded`` (prints a JSON summary)."""
    import json
    import tempfile
    from pathlib import Path

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from nue_core.composer import compose
    from nue_core.config import ModelConfig
    from nue_core.errors import NueError
    from nue_core.overrides import parse_override, set_dotted
    from nue_core.train.config import TrainConfig
    from nue_core.yaml_safe import MAX_ALIAS_EXPANSION, MAX_ALIASES

    seen = {"refused": 0, "accepted": 0}

    @settings(max_examples=ALIAS_CASES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(fan=st.integers(1, 12), depth=st.integers(1, 10), leaf=st.sampled_from(["x", "1", "yes", "{k: v}", "[]"]),
           where=st.sampled_from(["model file", "train file", "--set"]))
    def prop(fan: int, depth: int, leaf: str, where: str) -> None:
        items = [f"l0: &l0 [{', '.join([leaf] * fan)}]"] + [
            f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * fan)}]" for i in range(1, depth)]
        bomb = alias_growth(fan, depth, leaf) > MAX_ALIAS_EXPANSION or fan * (depth - 1) > MAX_ALIASES
        folder = Path(tempfile.mkdtemp())
        try:
            if where == "model file":
                (folder / "m.yaml").write_text("encoder: hubert\nbridge: conv\ndecoder:\n  name: gpt-neox\n"
                                               "  tokenizer: byte\n  config:\n" + "".join(f"    {i}\n" for i in items))
                compose(ModelConfig.load(folder / "m.yaml"), describe=True)
            elif where == "train file":
                (folder / "t.yaml").write_text("".join(f"{i}\n" for i in items))
                TrainConfig.load(folder / "t.yaml")
            else:
                base = {"encoder": "hubert", "bridge": "conv", "decoder": {"name": "gpt-neox", "tokenizer": "byte"}}
                data = set_dotted(base, *parse_override("decoder.config={" + ", ".join(items) + "}"))
                compose(ModelConfig.from_dict(data), describe=True)
        except NueError as exc:
            seen["refused"] += 1
            if bomb:
                assert "aliases" in str(exc) or "alias" in str(exc), str(exc)
            return
        assert not bomb, (fan, depth, where)
        seen["accepted"] += 1

    prop()
    print(json.dumps(seen))


def test_generated_alias_documents_are_bounded():
    """60 generated anchor/alias documents (fan-out 1-12, 1-10 levels, 387 million values at
    most) in a model file, a train file or a ``--set`` value: each loads (and then passes or fails
    validation) or is refused as an alias bomb, in the child under the 4 GiB cap."""
    res = run_capped("from tests.robustness.test_config_fuzz import alias_documents_property as p; p()", timeout=300)
    seen = last_json(res)
    assert seen["refused"] + seen["accepted"] >= ALIAS_CASES // 2


SIZE_KEYS = ["num_hidden_layers", "hidden_size", "intermediate_size", "vocab_size", "num_attention_heads",
             "max_position_embeddings"]


def size_fields_property() -> None:
    """Child side of ``test_generated_size_fields_are_checked_before_building``."""
    import json

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from nue_core.composer import compose
    from nue_core.errors import NueError
    from nue_core.size_check import MAX_LAYERS

    counts = {"built": 0, "refused": 0}
    bad = st.one_of(st.integers(-10**6, 0), st.booleans(), st.floats(allow_nan=True), st.text(max_size=4))
    large = st.integers(MAX_LAYERS + 1, 10**15)

    @settings(max_examples=SIZE_CASES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(part=st.sampled_from(["encoder", "decoder"]), key=st.sampled_from(SIZE_KEYS),
           value=st.one_of(bad, large, st.integers(1, 4)), describe=st.booleans())
    def prop(part: str, key: str, value: object, describe: bool) -> None:
        cfg = tiny_config()
        cfg[part]["config"][key] = value
        try:
            compose(cfg, describe=describe)
        except NueError as exc:
            counts["refused"] += 1
            text = str(exc)
            invalid = isinstance(value, bool) or not isinstance(value, int) or value < 1
            if invalid and not isinstance(value, str):
                assert f"{part}.config.{key}" in text or part in text, text
            if key == "num_hidden_layers" and isinstance(value, int) and not isinstance(value, bool) and value > MAX_LAYERS:
                assert f"{part}.config.{key}" in text and f"{value:,}" in text, text
            return
        counts["built"] += 1

    prop()
    print(json.dumps(counts))


def test_generated_size_fields_are_checked_before_building():
    """60 generated values (negative, zero, booleans, floats, strings, 10^4..10^15, small) for the
    well-known size fields of the encoder's or decoder's architecture, described or built: each
    builds or is a NueError naming the field, in the child under the 4 GiB cap and in time."""
    counts = last_json(run_capped("from tests.robustness.test_config_fuzz import size_fields_property as p; p()",
                                  timeout=300))
    assert counts["refused"] > 0
