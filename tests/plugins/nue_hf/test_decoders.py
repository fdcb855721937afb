"""Decoders of nue_hf (gpt-neox, llama, hf-causal-lm) on tiny random configs."""

from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path
from typing import Any, Iterator

import pytest
import torch
import yaml

from nue_core.errors import ConfigError
from nue_core.protocols import Decoder
from nue_core.registry import BuildContext, ComponentEntry, Registry
from nue_hf.decoders import HFCausalLMDecoder, default_lora_targets, register_decoders
from nue_hf.tokenizers import SentencePieceTokenizer
from tests.plugins.nue_hf.test_tokenizers import make_sentencepiece_folder

TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64,
        "max_position_embeddings": 128}
CONFIGS: dict[str, dict[str, Any]] = {
    "gpt-neox": {**TINY, "rotary_pct": 1.0, "use_parallel_residual": False},
    "llama": {**TINY, "num_key_value_heads": 2},
    "hf-causal-lm": {**TINY, "model_type": "qwen2", "num_key_value_heads": 2},
}
NEOX_3B = {"model_type": "gpt_neox", "hidden_size": 2816, "num_hidden_layers": 36, "num_attention_heads": 22,
           "intermediate_size": 11264, "vocab_size": 32000, "rotary_pct": 1.0, "use_parallel_residual": False}


@pytest.fixture(scope="module")
def registry() -> Registry:
    reg = Registry()

    def register(name: str, factory: Any, options: Any = None, aliases: Any = (), description: str = "") -> None:
        entry = ComponentEntry("decoder", name, factory, options, tuple(aliases), description, plugin="nue_hf")
        reg.add(entry)

    register_decoders(register)
    return reg


def build(registry: Registry, name: str, ctx: BuildContext | None = None, **options: Any) -> Any:
    torch.manual_seed(0)
    return registry.get("decoder", name).build(options, ctx or BuildContext(), where=f"decoder '{name}'")


def tiny(registry: Registry, name: str, tokenizer: str = "byte", **options: Any) -> HFCausalLMDecoder:
    return build(registry, name, config=dict(CONFIGS[name]), tokenizer=tokenizer, **options).eval()


def logits_of(decoder: HFCausalLMDecoder, ids: torch.Tensor) -> torch.Tensor:
    """ids (b, l), no padding -> logits (b, l, v)."""
    positions = torch.arange(ids.shape[1])[None].expand_as(ids)
    with torch.no_grad():
        return decoder(decoder.embed(ids), torch.ones_like(ids), positions).logits


def test_names_and_aliases(registry: Registry) -> None:
    assert registry.names("decoder") == ["gpt-neox", "hf-causal-lm", "llama"]
    for alias, name in [("neox", "gpt-neox"), ("gptneox", "gpt-neox"), ("hf", "hf-causal-lm"),
                        ("causal-lm", "hf-causal-lm")]:
        assert registry.get("decoder", alias).name == name


@pytest.mark.parametrize("name", list(CONFIGS))
def test_protocol_sizes_and_groups(registry: Registry, name: str) -> None:
    decoder = tiny(registry, name)
    assert isinstance(decoder, Decoder)
    assert (decoder.embed_dim, decoder.vocab_size) == (32, 260)  # vocab filled from the byte tokenizer
    config = decoder.model.config
    assert (config.bos_token_id, config.eos_token_id, config.pad_token_id) == (257, 258, 256)
    assert set(decoder.freeze_groups) == {"embeddings", "lm_head", "layers"}
    names = [n for n, _ in decoder.named_parameters()]
    for prefixes in decoder.freeze_groups.values():
        assert all(any(n.startswith(p) for n in names) for p in prefixes)
    out = decoder(decoder.embed(torch.tensor([[1, 2, 3]])), torch.ones(1, 3), torch.arange(3)[None])
    assert out.logits.shape == (1, 3, 260)


def test_conformance_suite(registry: Registry) -> None:
    from nue_core.plugins import PluginSet
    from nue_core.testing import check_component

    plugins = PluginSet(registry=registry, plugins=[])
    for name, config in CONFIGS.items():
        check_component("decoder", name, {"config": config, "tokenizer": "byte"}, plugin_set=plugins)


def test_tied_head_has_no_lm_head_group(registry: Registry) -> None:
    decoder = build(registry, "hf-causal-lm", config={**CONFIGS["hf-causal-lm"], "tie_word_embeddings": True},
                    tokenizer="byte")
    assert set(decoder.freeze_groups) == {"embeddings", "layers"}


def test_unknown_option_key_is_named(registry: Registry) -> None:
    with pytest.raises(ConfigError, match="tokenizr: unknown key.*allowed: checkpoint, config"):
        build(registry, "gpt-neox", config=CONFIGS["gpt-neox"], tokenizr="byte")


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("gpt-neox", {"tokenizer": "byte"}, "exactly one of 'checkpoint' or 'config'"),
        ("gpt-neox", {"checkpoint": "x", "config": {}}, "exactly one of"),
        ("hf-causal-lm", {"config": {"hidden_size": 32}, "tokenizer": "byte"}, "must include 'model_type'"),
        ("gpt-neox", {"config": {"model_type": "llama"}, "tokenizer": "byte"}, "use decoder name 'hf-causal-lm'"),
        ("llama", {"config": {**TINY, "hiden_size": 8}, "tokenizer": "byte"}, "'hiden_size' .*'hidden_size'"),
        ("llama", {"config": {**TINY, "vocab_size": 100}, "tokenizer": "byte"}, "260 tokens.*vocabulary is 100"),
        ("hf-causal-lm", {"config": {"model_type": "no-such-arch"}, "tokenizer": "byte"}, "no-such-arch"),
        ("llama", {"config": TINY}, "also give 'tokenizer'"),
    ],
)
def test_option_errors(registry: Registry, name: str, options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build(registry, name, **options)


@pytest.mark.parametrize("name", ["gpt-neox", "llama"])
def test_left_padding_matches_unpadded(registry: Registry, name: str) -> None:
    decoder = tiny(registry, name)
    gen = torch.Generator().manual_seed(1)
    long, short = torch.randint(0, 256, (6,), generator=gen), torch.randint(0, 256, (3,), generator=gen)
    ids = torch.stack([long, torch.cat([torch.full((3,), 256), short])])  # (2, 6), item 1 left-padded
    mask = torch.tensor([[1] * 6, [0] * 3 + [1] * 3])
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        batch = decoder(decoder.embed(ids), mask, positions).logits
    torch.testing.assert_close(batch[0], logits_of(decoder, long[None])[0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(batch[1, 3:], logits_of(decoder, short[None])[0], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_kv_cache_steps_match_full_forward(registry: Registry, name: str) -> None:
    decoder = tiny(registry, name)
    ids = torch.randint(0, 256, (2, 7), generator=torch.Generator().manual_seed(2))
    full = logits_of(decoder, ids)
    mask = torch.ones_like(ids)
    positions = torch.arange(7)[None].expand(2, 7)
    with torch.no_grad():
        out = decoder(decoder.embed(ids[:, :4]), mask[:, :4], positions[:, :4], use_cache=True)
        steps = [out.logits]
        for t in range(4, 7):  # one token at a time, as generation does
            step = decoder.embed(ids[:, t : t + 1])  # (2, 1, d)
            out = decoder(step, mask[:, : t + 1], positions[:, t : t + 1], out.cache)
            steps.append(out.logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-4)


@contextlib.contextmanager
def transformers_messages() -> Iterator[list[str]]:
    """Collect every warning transformers gives inside the block (read the list after it).

    Both channels: its log records (the "transformers" logger does not propagate to the root, so
    pytest's caplog would miss them) and Python warnings. ``warning_once`` forgets what it said
    before, so a message an earlier test in this process triggered is given again.
    """
    from transformers.utils import logging as hf_logging

    hf_logging.warning_once.cache_clear()
    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    logger, handler = logging.getLogger("transformers"), Collect(logging.WARNING)
    level = logger.level
    logger.setLevel(logging.WARNING)  # a quieter verbosity set elsewhere must not hide them
    logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield messages
        messages.extend(str(w.message) for w in caught)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_cached_decoding_uses_current_transformers_api(registry: Registry, name: str) -> None:
    """Prefill, cached steps and beam reordering as generation runs them: transformers says nothing
    (5.x logs "`past_key_values`/`cache_params` are deprecated" when asked for the old name)."""
    decoder = tiny(registry, name)
    ids = torch.randint(0, 256, (2, 5), generator=torch.Generator().manual_seed(3))
    mask, positions = torch.ones_like(ids), torch.arange(5)[None].expand(2, 5)
    with transformers_messages() as messages, torch.no_grad():
        out = decoder(decoder.embed(ids[:, :3]), mask[:, :3], positions[:, :3], cache=None, use_cache=True)
        for t in (3, 4):
            cache = decoder.reorder_cache(out.cache, torch.tensor([1, 0]))  # beams swap places
            out = decoder(decoder.embed(ids[:, t : t + 1]), mask[:, : t + 1], positions[:, t : t + 1],
                          cache=cache, use_cache=True)
    assert out.cache is not None
    assert messages == []


@pytest.mark.parametrize("name", ["gpt-neox", "llama"])
def test_speech_lm_generation_is_quiet(name: str) -> None:
    from nue_core.composer import compose
    from nue_core.generation import GenerationConfig
    from tests.conftest import make_audio, tiny_config

    torch.manual_seed(0)
    model = compose(tiny_config(decoder=name)).eval()
    wave, lens = make_audio([0.5, 0.3], seed=1)
    with transformers_messages() as messages:
        model.generate(wave, lens, GenerationConfig(max_new_tokens=4))
        model.generate(wave, lens, GenerationConfig(max_new_tokens=4, num_beams=2))
    assert messages == []


def test_no_cache_in_training_unless_asked(registry: Registry) -> None:
    decoder = tiny(registry, "llama").train()
    embeds = decoder.embed(torch.tensor([[1, 2]]))
    assert decoder(embeds, torch.ones(1, 2), torch.arange(2)[None]).cache is None
    assert decoder(embeds, torch.ones(1, 2), torch.arange(2)[None], use_cache=True).cache is not None


@pytest.fixture(scope="module")
def neox_checkpoint(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """A tiny GPT-NeoX saved as a transformers checkpoint with rinna-style tokenizer files."""
    folder = tmp_path_factory.mktemp("ckpt") / "tiny-neox"
    make_sentencepiece_folder(folder)  # spiece.model + special_tokens_map.json at the top level
    decoder = tiny(registry, "gpt-neox", tokenizer=str(folder))
    decoder.model.save_pretrained(str(folder))
    return folder, decoder


def test_checkpoint_folder_loads_same_weights_and_tokenizer(registry: Registry, neox_checkpoint: Any) -> None:
    folder, original = neox_checkpoint
    assert original.vocab_size == 60 and original.model.config.bos_token_id == 2
    loaded = build(registry, "gpt-neox", BuildContext(load_weights=True), checkpoint=str(folder)).eval()
    assert isinstance(loaded.tokenizer, SentencePieceTokenizer)
    ids = torch.tensor([loaded.tokenizer.encode("<s>hello world[SEP]")])
    assert ids[0, 0] == 2 and ids[0, -1] == 4
    torch.testing.assert_close(logits_of(loaded, ids), logits_of(original, ids), atol=0, rtol=0)


def test_checkpoint_dtype_and_architecture_only(registry: Registry, neox_checkpoint: Any) -> None:
    folder, original = neox_checkpoint
    half = build(registry, "neox", BuildContext(load_weights=True), checkpoint=str(folder), dtype="bfloat16")
    assert {p.dtype for p in half.parameters()} == {torch.bfloat16}
    described = build(registry, "neox", BuildContext(load_weights=False), checkpoint=str(folder))
    shapes = {n: p.shape for n, p in original.state_dict().items()}
    assert {n: p.shape for n, p in described.state_dict().items()} == shapes
    with pytest.raises(ConfigError, match="model_type is 'gpt_neox'.*hf-causal-lm"):
        build(registry, "llama", BuildContext(load_weights=False), checkpoint=str(folder))


@pytest.mark.parametrize("name", list(CONFIGS))
def test_export_options_rebuild_the_architecture(registry: Registry, name: str, tmp_path: Path) -> None:
    original = tiny(registry, name)
    options = original.export_options(tmp_path)
    assert options["config"]["model_type"] == original.model.config.model_type
    assert options["tokenizer"] == "byte" and options["dtype"] == "float32"
    assert yaml.safe_load(yaml.safe_dump(options)) == options  # goes into nue.yaml as is
    rebuilt = build(registry, name, BuildContext(load_weights=False, base_dir=tmp_path), **options).eval()
    rebuilt.load_state_dict(original.state_dict())  # strict: parameter names are stable
    ids = torch.tensor([[5, 6, 7, 8]])
    torch.testing.assert_close(logits_of(rebuilt, ids), logits_of(original, ids), atol=0, rtol=0)


def test_export_options_save_sentencepiece_tokenizer(neox_checkpoint: Any, registry: Registry,
                                                     tmp_path: Path) -> None:
    _, original = neox_checkpoint
    options = original.export_options(tmp_path)
    assert options["tokenizer"] == "tokenizer" and (tmp_path / "tokenizer" / "spiece.model").is_file()
    rebuilt = build(registry, "gpt-neox", BuildContext(load_weights=False, base_dir=tmp_path), **options)
    assert rebuilt.tokenizer is not None and rebuilt.tokenizer.encode("<s>[SEP]") == [2, 4]


def test_describe_3b_on_meta_without_files(registry: Registry) -> None:
    ctx = BuildContext(load_weights=False, architectures={"rinna/japanese-gpt-neox-3.6b": NEOX_3B})
    with torch.device("meta"):
        decoder = build(registry, "gpt-neox", ctx, checkpoint="rinna/japanese-gpt-neox-3.6b")
    assert decoder.tokenizer is None
    assert (decoder.embed_dim, decoder.vocab_size) == (2816, 32000)
    assert {p.device.type for p in decoder.parameters()} == {"meta"}
    assert 3.5e9 < sum(p.numel() for p in decoder.parameters()) < 3.7e9


def test_unknown_checkpoint_error_names_it(registry: Registry, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no-such-org/no-such-model"):
        build(registry, "gpt-neox", BuildContext(load_weights=False), checkpoint="no-such-org/no-such-model",
              tokenizer="byte")


@pytest.mark.parametrize("name", list(CONFIGS))
def test_lora_injection_with_default_targets(registry: Registry, name: str) -> None:
    from peft import LoraConfig, inject_adapter_in_model

    decoder = tiny(registry, name)
    ids = torch.tensor([[1, 2, 3, 4]])
    before = logits_of(decoder, ids)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=decoder.lora_targets)
    inject_adapter_in_model(lora, decoder.model)
    adapted = [n for n, _ in decoder.named_modules() if n.endswith(".lora_A")]
    assert len(adapted) == 2 * len(decoder.lora_targets)  # every target in both layers
    torch.testing.assert_close(logits_of(decoder, ids), before)  # lora_B starts at zero


def test_lora_targets_fall_back_to_peft(registry: Registry) -> None:
    gpt2 = build(registry, "hf-causal-lm", config={"model_type": "gpt2", "n_embd": 32, "n_layer": 2,
                                                   "n_head": 4}, tokenizer="byte")
    assert gpt2.lora_targets == ["c_attn"]
    assert set(gpt2.freeze_groups) >= {"embeddings", "layers"}
    assert default_lora_targets("no-such-arch") == []  # the core then asks for lora.target_modules


def test_gradient_checkpointing_trains(registry: Registry) -> None:
    decoder = tiny(registry, "llama", gradient_checkpointing=True).train()
    model = decoder.model
    assert getattr(model, "is_activation_checkpointing", None) or model.is_gradient_checkpointing
    embeds = decoder.embed(torch.tensor([[1, 2, 3]]))
    decoder(embeds, torch.ones(1, 3), torch.arange(3)[None]).logits.sum().backward()
    assert decoder.model.get_input_embeddings().weight.grad is not None
