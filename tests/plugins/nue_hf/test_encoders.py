"""Tests of the transformers speech encoders (hubert, wav2vec2) on tiny random models."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach a model hub from tests

from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from pydantic import ValidationError
from torch import nn

from nue_core.errors import ConfigError
from nue_core.protocols import Encoder
from nue_core.registry import BuildContext
from nue_core.testing import check_encoder
from nue_hf.encoders import HFEncoderOptions, HFSpeechEncoder, register_encoders
from nue_hf.masked_feature_extractor import masked_group_norm

TINY = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=37,
    conv_dim=[32, 32],
    conv_kernel=[10, 3],
    conv_stride=[5, 2],
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=2,
)
# name -> (encoder kind, config overrides): the three feature-extractor / encoder layouts.
VARIANTS = {
    "hubert-group": ("hubert", {}),
    "hubert-layer": ("hubert", {"feat_extract_norm": "layer", "conv_bias": True}),
    "wav2vec2-group": ("wav2vec2", {}),
    "wav2vec2-stable": ("wav2vec2", {"feat_extract_norm": "layer", "do_stable_layer_norm": True, "conv_bias": True}),
}


@pytest.fixture(scope="module")
def factories() -> dict[str, Any]:
    calls: dict[str, Any] = {}

    def register(name: str, factory: Any, **kw: Any) -> None:
        calls[name] = (factory, kw)

    register_encoders(register)
    return calls


def build(factories: dict[str, Any], kind: str, ctx: BuildContext | None = None, **options: Any) -> HFSpeechEncoder:
    factory, kw = factories[kind]
    encoder = factory(kw["options"].model_validate(options), ctx or BuildContext(load_weights=False))
    return encoder.eval()


def variant(factories: dict[str, Any], name: str, **options: Any) -> HFSpeechEncoder:
    kind, overrides = VARIANTS[name]
    torch.manual_seed(0)
    encoder = build(factories, kind, config={**TINY, **overrides}, **options)
    _perturb_norms(encoder)
    return encoder


def _perturb_norms(encoder: nn.Module) -> None:
    # Fresh norms are identity (weight 1, bias 0); random affine parameters make the tests bite.
    with torch.no_grad():
        for module in encoder.modules():
            if isinstance(module, (nn.GroupNorm, nn.LayerNorm)):
                module.weight.normal_(1.0, 0.3)
                module.bias.normal_(0.0, 0.3)


def audio(lengths: list[int], seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """A zero-padded batch (b, max(lengths)) of random audio with a DC offset, and its lengths."""
    gen = torch.Generator().manual_seed(seed)
    batch = torch.zeros(len(lengths), max(lengths))
    for i, n in enumerate(lengths):
        batch[i, :n] = 0.5 * torch.randn(n, generator=gen) + 0.3
    return batch, torch.tensor(lengths)


# --- registration and options -------------------------------------------------------------------


def test_registers_both_encoders_with_options_and_aliases(factories: dict[str, Any]) -> None:
    assert set(factories) == {"hubert", "wav2vec2"}
    for _, kw in factories.values():
        assert kw["options"] is HFEncoderOptions
        assert kw["aliases"] and kw["description"]


def test_unknown_option_names_the_key() -> None:
    with pytest.raises(ValidationError, match="chekpoint"):
        HFEncoderOptions.model_validate({"checkpoint": "x", "chekpoint": "y"})


@pytest.mark.parametrize("values", [{}, {"checkpoint": "x", "config": {}}])
def test_exactly_one_of_checkpoint_or_config(values: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="exactly one of 'checkpoint'"):
        HFEncoderOptions.model_validate(values)


def test_unknown_config_field_is_an_error(factories: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="hiden_size"):
        build(factories, "hubert", config={**TINY, "hiden_size": 8})


def test_layer_out_of_range_is_an_error(factories: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="layer 3 is out of range for a 2-layer encoder"):
        build(factories, "hubert", config=TINY, layer=3)
    build(factories, "hubert", config=TINY, layer=-3)  # = layer 0


def test_unreadable_checkpoint_asks_for_config(factories: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="pass `config:`"):
        build(factories, "hubert", checkpoint="./no/such/checkpoint-folder")


# --- the Encoder contract ----------------------------------------------------------------------


@pytest.mark.parametrize("name", list(VARIANTS))
def test_encoder_contract(factories: dict[str, Any], name: str) -> None:
    encoder = variant(factories, name)
    assert isinstance(encoder, Encoder)
    assert encoder.output_dim == 32 and encoder.sample_rate == 16000
    assert encoder.frame_rate_hz == 1600.0
    assert encoder.lora_targets == ["q_proj", "v_proj"]
    names = [n for n, _ in encoder.named_parameters()]
    for group, prefixes in encoder.freeze_groups.items():
        for prefix in prefixes:
            assert any(n.startswith(prefix) for n in names), (group, prefix)
    waves, lengths = audio([1600, 1111, 403])
    out = encoder(waves, lengths)
    assert out.hidden.shape == (3, 159, 32)
    assert torch.equal(out.lengths, encoder.output_lengths(lengths))
    assert out.lengths.tolist() == [159, 110, 39]
    assert out.all_layers is not None and len(out.all_layers) == 3


@pytest.mark.parametrize("name", list(VARIANTS))
def test_passes_the_conformance_suite(factories: dict[str, Any], name: str) -> None:
    # SpecAugment's mask embedding only gets a gradient in training, and the suite checks in eval mode
    encoder = variant(factories, name, layer="weighted")
    check_encoder(encoder, batch_seconds=(0.05, 0.08), ignore=("model.masked_spec_embed",))


# --- padding invariance and agreement with transformers -----------------------------------------


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("name", list(VARIANTS))
def test_padding_does_not_change_valid_frames(factories: dict[str, Any], name: str, normalize: bool) -> None:
    encoder = variant(factories, name, normalize_waveform=normalize)
    waves, lengths = audio([1600, 1111, 700])
    with torch.no_grad():
        batched = encoder(waves, lengths)
        for i, n in enumerate(lengths.tolist()):
            alone = encoder(waves[i : i + 1, :n], lengths[i : i + 1])
            frames = int(alone.lengths[0])
            assert frames == int(batched.lengths[i])
            torch.testing.assert_close(batched.hidden[i, :frames], alone.hidden[0], atol=1e-5, rtol=0)
            assert not batched.hidden[i, frames:].any(), "padded frames must be zero"


@pytest.mark.parametrize("name", list(VARIANTS))
def test_unpadded_item_matches_transformers_forward(factories: dict[str, Any], name: str) -> None:
    encoder = variant(factories, name)
    waves, lengths = audio([1234])
    with torch.no_grad():
        ours = encoder(waves, lengths)
        theirs = encoder.model(waves, output_hidden_states=True)
    torch.testing.assert_close(ours.hidden, theirs.last_hidden_state, atol=1e-5, rtol=0)
    # transformers' last captured state is before a stable-layer-norm model's final norm
    for mine, hf in zip(ours.all_layers[:-1], theirs.hidden_states[:-1]):
        torch.testing.assert_close(mine, hf, atol=1e-5, rtol=0)


def test_masked_group_norm_matches_group_norm_per_item() -> None:
    torch.manual_seed(0)
    norm = nn.GroupNorm(4, 8)
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    x = torch.randn(2, 8, 20)
    lengths = torch.tensor([20, 13])
    y = masked_group_norm(x, lengths, norm)
    torch.testing.assert_close(y[0], norm(x[:1])[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(y[1, :, :13], norm(x[1:, :, :13])[0], atol=1e-5, rtol=0)
    assert not y[1, :, 13:].any()


def test_normalize_waveform_ignores_gain_and_offset(factories: dict[str, Any]) -> None:
    encoder = variant(factories, "hubert-group", normalize_waveform=True)
    waves, lengths = audio([1600, 900])
    scaled = (3.0 * waves + 0.7) * (torch.arange(1600) < lengths[:, None])
    with torch.no_grad():
        torch.testing.assert_close(encoder(waves, lengths).hidden, encoder(scaled, lengths).hidden, atol=1e-4, rtol=0)


def test_too_short_audio_is_a_clear_error(factories: dict[str, Any]) -> None:
    encoder = variant(factories, "hubert-group")
    waves, lengths = audio([1600, 15])
    with pytest.raises(ValueError, match="receptive field \\(20 samples\\)"):
        encoder(waves, lengths)


# --- layer selection ---------------------------------------------------------------------------


def test_int_layer_selects_that_hidden_state(factories: dict[str, Any]) -> None:
    full = variant(factories, "hubert-group")
    first = variant(factories, "hubert-group", layer=1)
    first.load_state_dict(full.state_dict())
    waves, lengths = audio([1600, 1000])
    with torch.no_grad():
        expected = full(waves, lengths).all_layers[1]
        got = first(waves, lengths)
    mask = (torch.arange(159) < got.lengths[:, None])[..., None]
    torch.testing.assert_close(got.hidden, expected * mask, atol=1e-6, rtol=0)
    assert len(got.all_layers) == 2  # layer 2 is never run ...
    assert not any(p.requires_grad for p in first.model.encoder.layers[1].parameters())  # ... nor trained


def test_negative_layer_counts_from_the_end(factories: dict[str, Any]) -> None:
    last = variant(factories, "hubert-group")
    minus_one = variant(factories, "hubert-group", layer=-1)
    waves, lengths = audio([800])
    with torch.no_grad():
        torch.testing.assert_close(last(waves, lengths).hidden, minus_one(waves, lengths).hidden)


def test_weighted_layers_start_uniform_and_learn(factories: dict[str, Any]) -> None:
    encoder = variant(factories, "wav2vec2-group", layer="weighted")
    assert encoder.layer_weights is not None and not encoder.layer_weights.any()
    waves, lengths = audio([1600, 1200])
    out = encoder(waves, lengths)
    mask = (torch.arange(159) < out.lengths[:, None])[..., None]
    torch.testing.assert_close(out.hidden, torch.stack(out.all_layers).mean(0) * mask, atol=1e-5, rtol=0)
    out.hidden.pow(2).sum().backward()
    assert encoder.layer_weights.grad is not None and encoder.layer_weights.grad.abs().sum() > 0


# --- gradients ---------------------------------------------------------------------------------


@pytest.mark.parametrize("checkpointing", [False, True])
def test_gradient_reaches_every_part(factories: dict[str, Any], checkpointing: bool) -> None:
    encoder = variant(
        factories, "hubert-group", gradient_checkpointing=checkpointing, mask_time_prob=0.3, layerdrop=0.0
    )
    encoder.train()
    waves, lengths = audio([1600, 1100])
    encoder(waves, lengths).hidden.sum().backward()
    for name in (
        "model.feature_extractor.conv_layers.0.layer_norm.weight",
        "model.feature_extractor.conv_layers.1.conv.weight",
        "model.feature_projection.projection.weight",
        "model.encoder.layers.0.attention.q_proj.weight",
        "model.encoder.layers.1.feed_forward.output_dense.weight",
    ):
        grad = encoder.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_layerdrop_keeps_one_state_per_layer(factories: dict[str, Any]) -> None:
    encoder = variant(factories, "hubert-group", layerdrop=0.9, layer="weighted").train()
    waves, lengths = audio([1600])
    torch.manual_seed(0)
    for _ in range(3):
        assert len(encoder(waves, lengths).all_layers) == 3


# --- checkpoints, export and description -------------------------------------------------------


@pytest.mark.parametrize("name", ["hubert-group", "wav2vec2-stable"])
def test_saved_checkpoint_loads_with_identical_outputs(factories: dict[str, Any], name: str, tmp_path: Path) -> None:
    original = variant(factories, name)
    original.model.save_pretrained(tmp_path / "ckpt")
    ctx = BuildContext(load_weights=True, base_dir=tmp_path)
    loaded = build(factories, VARIANTS[name][0], ctx, checkpoint="ckpt")  # relative to base_dir
    waves, lengths = audio([1600, 777])
    with torch.no_grad():
        torch.testing.assert_close(loaded(waves, lengths).hidden, original(waves, lengths).hidden, atol=0, rtol=0)


def test_checkpoint_of_the_other_architecture_is_refused(factories: dict[str, Any], tmp_path: Path) -> None:
    variant(factories, "wav2vec2-group").model.save_pretrained(tmp_path)
    with pytest.raises(ConfigError, match="use encoder name 'wav2vec2'"):
        build(factories, "hubert", BuildContext(load_weights=True), checkpoint=str(tmp_path))


def test_local_checkpoint_without_weights_builds_from_its_config(factories: dict[str, Any], tmp_path: Path) -> None:
    variant(factories, "hubert-layer").model.save_pretrained(tmp_path)
    encoder = build(factories, "hubert", checkpoint=str(tmp_path))
    assert encoder.model.config.feat_extract_norm == "layer"


@pytest.mark.parametrize("name", list(VARIANTS))
def test_exported_options_rebuild_the_architecture(factories: dict[str, Any], name: str, tmp_path: Path) -> None:
    original = variant(factories, name, layer="weighted", normalize_waveform=True, mask_time_prob=0.0)
    options = original.export_options(tmp_path)
    assert yaml.safe_load(yaml.safe_dump(options)) == options  # goes into nue.yaml as it is
    rebuilt = build(factories, VARIANTS[name][0], **options)
    rebuilt.load_state_dict(original.state_dict())
    assert rebuilt.model.config.mask_time_prob == 0.0
    waves, lengths = audio([1600, 900])
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(waves, lengths).hidden, original(waves, lengths).hidden, atol=0, rtol=0)


def test_describes_on_meta_device_from_known_architecture(factories: dict[str, Any]) -> None:
    ctx = BuildContext(load_weights=False, architectures={"some/id": {**TINY, "model_type": "hubert"}})
    with torch.device("meta"):
        encoder = build(factories, "hubert", ctx, checkpoint="some/id", layer="weighted")
    assert all(p.device.type == "meta" for p in encoder.parameters())
    assert encoder.output_dim == 32 and encoder.frame_rate_hz == 1600.0
    assert encoder.output_lengths(torch.tensor([16000])).tolist() == [1599]
