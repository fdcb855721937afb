"""Tests of the nue_s3prl encoders on tiny random s3prl checkpoints the tests write themselves."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach a model hub from tests

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("s3prl", reason="s3prl is not installed: pip install 'nue-asr[s3prl]'")

import torch
import yaml
from torch import nn

from nue_core.composer import compose
from nue_core.errors import CheckpointError, ConfigError
from nue_core.plugins import load_plugins
from nue_core.protocols import Encoder
from nue_core.registry import BuildContext
from nue_core.testing import Example, check_plugin
from nue_s3prl import plugin as s3prl_plugin
from nue_s3prl.checkpoints import build_model
from nue_core.torchaudio_guard import TorchaudioState
from nue_s3prl import compat
from nue_s3prl.compat import INSTALL_HINT, install_torchaudio_shims
from tests.conftest import TINY_BRIDGES, TINY_DECODER_CONFIGS, make_audio

# fairseq-style config fields of a tiny model: 320 samples per frame (50 Hz) like HuBERT base.
TINY_MODEL_CFG = {
    "encoder_layers": 2,
    "encoder_embed_dim": 32,
    "encoder_ffn_embed_dim": 64,
    "encoder_attention_heads": 2,
    "conv_feature_layers": "[(32, 10, 5)] + [(32, 8, 8)] * 2",
    "conv_pos": 16,
    "conv_pos_groups": 2,
    "label_rate": 50,
}
# name -> (family, model_cfg overrides, task_cfg): the extractor / transformer layouts.
VARIANTS = {
    "hubert-group": ("hubert", {}, {"normalize": False}),
    "hubert-layer-norm": ("hubert", {"extractor_mode": "layer_norm", "layer_norm_first": True, "conv_bias": True},
                          {"normalize": True}),
    "wav2vec2-group": ("wav2vec2", {}, {"normalize": False}),
}
UPSTREAM = {"hubert": "hubert_local", "wav2vec2": "wav2vec2_local"}


def _perturb_norms(model: nn.Module) -> None:
    # Fresh norms are identity; random affine parameters make padding leaks show.
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.GroupNorm, nn.LayerNorm)) and module.weight is not None:
                module.weight.normal_(1.0, 0.3)
                module.bias.normal_(0.0, 0.3)


def write_checkpoint(path: Path, name: str, seed: int = 0) -> Path:
    """A converted-s3prl-style checkpoint: plain dict of configs and random weights."""
    family, overrides, task_cfg = VARIANTS[name]
    model_cfg = {**TINY_MODEL_CFG, **overrides}
    torch.manual_seed(seed)
    if family == "hubert":
        from s3prl.upstream.hubert.hubert_model import HubertConfig, HubertModel, HubertPretrainingConfig

        symbols = [["<s>", "<pad>", "a", "b"]]
        cfg = HubertConfig(**model_cfg)
        model = HubertModel(cfg, HubertPretrainingConfig(**task_cfg), symbols)
        extra = {"dictionaries_symbols": symbols}
    else:
        model, _, _ = build_model("wav2vec2", model_cfg, task_cfg)
        extra = {}
    _perturb_norms(model)
    torch.save({"task_cfg": task_cfg, "model_cfg": model_cfg, "model_weight": model.state_dict(), **extra}, path)
    return path


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("s3prl")
    return {name: write_checkpoint(folder / f"{name}.pt", name) for name in VARIANTS}


@pytest.fixture(scope="module")
def plugins():  # type: ignore[no-untyped-def]
    return load_plugins()


def build(plugins: Any, name: str, ctx: BuildContext | None = None, **options: Any) -> nn.Module:
    entry = plugins.registry.get("encoder", name)
    return entry.build(options, ctx or BuildContext(), where=name).eval()


def variant(plugins: Any, ckpts: dict[str, Path], name: str, **options: Any) -> nn.Module:
    family = VARIANTS[name][0]
    return build(plugins, f"s3prl:{family}", checkpoint=str(ckpts[name]), **options)


def audio(lengths: list[int], seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """A zero-padded batch (b, max(lengths)) of random audio with a DC offset, and its lengths."""
    gen = torch.Generator().manual_seed(seed)
    batch = torch.zeros(len(lengths), max(lengths))
    for i, n in enumerate(lengths):
        batch[i, :n] = 0.5 * torch.randn(n, generator=gen) + 0.3
    return batch, torch.tensor(lengths)


def hf_folder(path: Path) -> Path:
    """A tiny transformers HuBERT folder (+ a preprocessor config s3prl's hf expert reads), 50 Hz."""
    from transformers import HubertConfig, HubertModel, Wav2Vec2FeatureExtractor

    torch.manual_seed(0)
    config = HubertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                          conv_dim=[32, 32, 32], conv_kernel=[10, 8, 8], conv_stride=[5, 8, 8],
                          num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    model = HubertModel(config)
    _perturb_norms(model)
    model.save_pretrained(path)
    Wav2Vec2FeatureExtractor(do_normalize=False, return_attention_mask=True).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def hf_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return hf_folder(tmp_path_factory.mktemp("hf") / "hubert")


# --- registration, options, availability ---------------------------------------------------------


def test_registers_three_names_with_their_default_upstreams(plugins: Any) -> None:
    entries = {e.name: e for e in plugins.registry.entries("encoder") if e.plugin == "nue_s3prl"}
    assert set(entries) == {"s3prl", "s3prl:hubert", "s3prl:wav2vec2"}
    assert entries["s3prl:hubert"].options.model_validate({"config": {}}).upstream == "hubert_local"
    assert entries["s3prl:wav2vec2"].options.model_validate({"config": {}}).upstream == "wav2vec2_local"
    assert plugins.registry.get("encoder", "s3prl-hubert").name == "s3prl:hubert"
    assert all(not e.unavailable for e in entries.values())  # torchaudio's pure-Python parts suffice


@pytest.mark.parametrize("values,match", [
    ({}, "exactly one of 'checkpoint'"),
    ({"checkpoint": "x.pt", "config": {}}, "exactly one of 'checkpoint'"),
    ({"checkpoint": "x.pt", "chekpoint": "y"}, "chekpoint"),
])
def test_options_are_validated(plugins: Any, values: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        build(plugins, "s3prl:hubert", **values)


def test_generic_upstream_refuses_native_only_options(plugins: Any) -> None:
    with pytest.raises(ConfigError, match="'config' and 'normalize_waveform' apply to"):
        build(plugins, "s3prl", upstream="wavlm", config={})


def test_unknown_upstream_suggests_close_names(plugins: Any) -> None:
    with pytest.raises(ConfigError, match="did you mean 'hf_hubert_custom'"):
        build(plugins, "s3prl", upstream="hf_hubert_custon", checkpoint="x")


def test_missing_s3prl_is_reported_with_the_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "s3prl", None)  # `import s3prl` now raises ImportError
    plugin_set = load_plugins(plugins=[("nue_s3prl", s3prl_plugin)])
    assert not plugin_set.broken
    entries = plugin_set.registry.entries("encoder")
    assert {e.name for e in entries} == {"s3prl", "s3prl:hubert", "s3prl:wav2vec2"}
    assert all(INSTALL_HINT in e.unavailable and "unavailable" not in e.description for e in entries)
    with pytest.raises(ConfigError, match=r'pip install "nue-asr\[s3prl\]"'):
        build(plugin_set, "s3prl:hubert", checkpoint="x.pt")


def test_without_a_loadable_torchaudio_only_hub_upstreams_are_refused(
    monkeypatch: pytest.MonkeyPatch, ckpts: dict[str, Path]
) -> None:
    problem = ('torchaudio 2.11.1 is installed but does not load beside torch 2.13.0+cpu (OSError: x.so); '
               'running without torchaudio. Fix: pip install "torchaudio==2.13.*"')
    monkeypatch.setattr(compat, "guard_torchaudio", lambda: TorchaudioState(importable=False, problem=problem))
    plugin_set = load_plugins(plugins=[("nue_s3prl", s3prl_plugin)])
    entries = {e.name: e for e in plugin_set.registry.entries("encoder")}
    assert "need torchaudio" in entries["s3prl"].unavailable
    assert not entries["s3prl:hubert"].unavailable and not entries["s3prl:wav2vec2"].unavailable
    with pytest.raises(ConfigError, match=r"s3prl upstream 'wavlm' is built by s3prl's hub.*Fix: pip install"):
        build(plugin_set, "s3prl", upstream="wavlm")
    encoder = build(plugin_set, "s3prl:hubert", checkpoint=str(ckpts["hubert-group"]))  # native: no torchaudio
    assert encoder(*audio([16000])).hidden.shape == (1, 49, 32)


# --- checkpoints: safety and errors ---------------------------------------------------------------


class _Payload:
    """Unpickling this runs ``Path.touch(marker)``: what a malicious checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.touch, (self.marker,))


def test_checkpoint_with_pickled_code_is_refused_and_never_runs(plugins: Any, tmp_path: Path) -> None:
    marker = tmp_path / "payload-ran"
    bad = tmp_path / "evil.pt"
    torch.save({"task_cfg": {}, "model_cfg": {}, "model_weight": {}, "x": _Payload(marker)}, bad)
    with pytest.raises(CheckpointError, match="refusing s3prl checkpoint .*evil.pt"):
        build(plugins, "s3prl:hubert", checkpoint=str(bad))
    assert not marker.exists()


def test_hub_loads_are_forced_to_weights_only(tmp_path: Path) -> None:
    import pickle

    from nue_s3prl.compat import weights_only_loads

    marker = tmp_path / "payload-ran"
    torch.save(_Payload(marker), tmp_path / "evil.pt")
    with weights_only_loads(), pytest.raises(pickle.UnpicklingError):
        torch.load(tmp_path / "evil.pt", weights_only=False)  # as an upstream's own loader might
    assert not marker.exists()


def test_bad_checkpoint_path_is_named(plugins: Any, tiny_cfg_with: Any) -> None:
    with pytest.raises(CheckpointError, match="s3prl checkpoint '/no/such/model.pt' does not exist"):
        build(plugins, "s3prl:hubert", checkpoint="/no/such/model.pt")
    with pytest.raises(ConfigError, match="/no/such/model.pt"):
        compose(tiny_cfg_with({"name": "s3prl:hubert", "checkpoint": "/no/such/model.pt"}))


def test_conv_layers_are_parsed_without_eval() -> None:
    from nue_s3prl.checkpoints import parse_conv_layers

    assert parse_conv_layers("[(512,10,5)] + [(512,3,2)] * 2") == [(512, 10, 5), (512, 3, 2), (512, 3, 2)]
    with pytest.raises(ConfigError, match="Call is not allowed"):
        parse_conv_layers("__import__('os').system('true')")


# --- the Encoder contract, padding, agreement with s3prl -------------------------------------------


@pytest.mark.parametrize("name", list(VARIANTS))
def test_encoder_contract_without_a_dummy_forward(plugins: Any, ckpts: dict[str, Path], name: str) -> None:
    encoder = variant(plugins, ckpts, name)
    assert isinstance(encoder, Encoder)
    assert (encoder.output_dim, encoder.frame_rate_hz, encoder.sample_rate) == (32, 50.0, 16000)
    waves, lengths = audio([16000, 11111, 4000])
    with torch.no_grad():
        out = encoder(waves, lengths)
    assert out.hidden.shape == (3, 49, 32) and out.lengths.tolist() == [49, 34, 12]
    assert torch.equal(out.lengths, encoder.output_lengths(lengths))
    assert len(out.all_layers) == 3


@pytest.mark.parametrize("name", list(VARIANTS))
def test_padding_does_not_change_valid_frames(plugins: Any, ckpts: dict[str, Path], name: str) -> None:
    encoder = variant(plugins, ckpts, name)
    waves, lengths = audio([16000, 11111, 4000])
    with torch.no_grad():
        batched = encoder(waves, lengths)
        for i, n in enumerate(lengths.tolist()):
            alone = encoder(waves[i : i + 1, :n], lengths[i : i + 1])
            frames = int(alone.lengths[0])
            torch.testing.assert_close(batched.hidden[i, :frames], alone.hidden[0], atol=1e-5, rtol=0)
            assert not batched.hidden[i, frames:].any()


@pytest.mark.parametrize("name", list(VARIANTS))
def test_matches_s3prl_expert_on_one_item_where_s3prl_batching_leaks(plugins: Any, ckpts: dict[str, Path], name: str) -> None:
    install_torchaudio_shims()
    if VARIANTS[name][0] == "hubert":
        from s3prl.upstream.hubert.expert import UpstreamExpert
    else:
        from s3prl.upstream.wav2vec2.expert import UpstreamExpert
    theirs = UpstreamExpert(str(ckpts[name])).eval()
    ours = variant(plugins, ckpts, name)
    waves, lengths = audio([16000, 11111])
    with torch.no_grad():
        expected = theirs([waves[1, :11111]])["hidden_states"]
        got = ours(waves[1:2, :11111], lengths[1:2]).all_layers
        assert len(got) == len(expected)
        for mine, s3prl in zip(got, expected):
            torch.testing.assert_close(mine, s3prl, atol=1e-5, rtol=0)
        # s3prl's own padded batch changes item 1 (group norm over padding / approximate frame mask)
        batched = theirs([waves[0], waves[1, :11111]])["hidden_states"][-1][1, :34]
    assert (batched - expected[-1][0]).abs().max() > 1e-3


# --- layer selection ---------------------------------------------------------------------------


def test_int_layer_runs_only_up_to_it(plugins: Any, ckpts: dict[str, Path]) -> None:
    full = variant(plugins, ckpts, "hubert-layer-norm", layer="last")
    first = variant(plugins, ckpts, "hubert-layer-norm", layer=1)
    waves, lengths = audio([16000, 9000])
    with torch.no_grad():
        expected = full(waves, lengths).all_layers[1]
        got = first(waves, lengths)
    mask = (torch.arange(49) < got.lengths[:, None])[..., None]
    torch.testing.assert_close(got.hidden, expected * mask, atol=1e-6, rtol=0)
    assert len(first.upstream.encoder.layers) == 1 and len(got.all_layers) == 2
    with pytest.raises(ConfigError, match="layer 3 is out of range"):
        variant(plugins, ckpts, "hubert-group", layer=3)


def test_weighted_layers_start_uniform_and_learn(plugins: Any, ckpts: dict[str, Path]) -> None:
    encoder = variant(plugins, ckpts, "wav2vec2-group")  # 'weighted' is the default
    weights = encoder.featurizer.weights
    assert weights is not None and not weights.any()
    waves, lengths = audio([16000, 12000])
    out = encoder(waves, lengths)
    mask = (torch.arange(49) < out.lengths[:, None])[..., None]
    torch.testing.assert_close(out.hidden, torch.stack(out.all_layers).mean(0) * mask, atol=1e-5, rtol=0)
    out.hidden.pow(2).sum().backward()
    assert weights.grad is not None and weights.grad.abs().sum() > 0


# --- export, description, conformance -------------------------------------------------------------


def test_exported_options_rebuild_the_architecture(plugins: Any, ckpts: dict[str, Path], tmp_path: Path) -> None:
    original = variant(plugins, ckpts, "hubert-layer-norm", layer="weighted")
    options = original.export_options(tmp_path)
    assert yaml.safe_load(yaml.safe_dump(options)) == options and options["normalize_waveform"] is True
    rebuilt = build(plugins, "s3prl:hubert", **options)
    rebuilt.load_state_dict(original.state_dict())
    waves, lengths = audio([16000, 9000])
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(waves, lengths).hidden, original(waves, lengths).hidden, atol=0, rtol=0)


def test_describes_on_meta_device_from_the_checkpoint_config(plugins: Any, ckpts: dict[str, Path]) -> None:
    with torch.device("meta"):
        encoder = build(plugins, "s3prl:wav2vec2", BuildContext(load_weights=False),
                        checkpoint=str(ckpts["wav2vec2-group"]))
    assert {p.device.type for p in encoder.parameters()} == {"meta"}
    assert encoder.output_dim == 32 and encoder.frame_rate_hz == 50.0


def test_plugin_conforms(ckpts: dict[str, Path], hf_ckpt: Path) -> None:
    check_plugin("nue_s3prl", {
        # the hub path; SpecAugment's embedding is unused in eval mode
        "encoder:s3prl": Example(options={"upstream": "hf_hubert_custom", "checkpoint": str(hf_ckpt)},
                                 ignore=("upstream.model.masked_spec_embed",)),
        "encoder:s3prl:hubert": {"checkpoint": str(ckpts["hubert-group"]), "layer": "weighted"},
        # a random init from `config:` (label_rate is a HuBERT-only field)
        "encoder:s3prl:wav2vec2": {"config": {k: v for k, v in TINY_MODEL_CFG.items() if k != "label_rate"},
                                   "layer": "last"},
    })


# --- agreement with the transformers `hubert` encoder ---------------------------------------------


def test_hf_hubert_custom_matches_the_transformers_hubert_encoder(plugins: Any, hf_ckpt: Path) -> None:
    ours = build(plugins, "s3prl", upstream="hf_hubert_custom", checkpoint=str(hf_ckpt), layer="last")
    reference = build(plugins, "hubert", checkpoint=str(hf_ckpt))
    assert (ours.output_dim, ours.frame_rate_hz) == (reference.output_dim, reference.frame_rate_hz)
    waves, lengths = audio([16000, 11111])
    with torch.no_grad():
        got, expected = ours(waves, lengths), reference(waves, lengths)
    # s3prl counts ceil(samples / 320) frames and repeats the last one; the conv gives one fewer
    assert got.lengths.tolist() == [50, 35] and expected.lengths.tolist() == [49, 34]
    for i, n in enumerate(expected.lengths.tolist()):
        torch.testing.assert_close(got.hidden[i, :n], expected.hidden[i, :n], atol=1e-5, rtol=0)
        for mine, hf in zip(got.all_layers, expected.all_layers):
            torch.testing.assert_close(mine[i, :n], hf[i, :n], atol=1e-5, rtol=0)
        torch.testing.assert_close(got.hidden[i, n], got.hidden[i, n - 1])


# --- composing and training -----------------------------------------------------------------------


@pytest.fixture
def tiny_cfg_with():  # type: ignore[no-untyped-def]
    def make(encoder: dict[str, Any], decoder: str = "llama") -> dict[str, Any]:
        return {
            "encoder": encoder,
            "bridge": {"name": "conv", **TINY_BRIDGES["conv"]},
            "decoder": {"name": decoder, "tokenizer": "byte", "config": dict(TINY_DECODER_CONFIGS[decoder])},
            "prompt": {"prefix": "<s>", "postfix": ""},
        }

    return make


@pytest.mark.parametrize("family", ["hubert", "wav2vec2"])
def test_composes_and_trains_a_step(ckpts: dict[str, Path], tiny_cfg_with: Any, family: str) -> None:
    name = "hubert-group" if family == "hubert" else "wav2vec2-group"
    torch.manual_seed(0)
    # freeze: [] overrides the plugin's default (frozen upstream) to fine-tune everything
    model = compose(tiny_cfg_with({"name": f"s3prl:{family}", "checkpoint": str(ckpts[name]), "freeze": []}))
    wave, lens = make_audio([0.6, 0.4])
    out = model(wave, lens, model.target_ids(["hello world", "seven"]))
    assert torch.isfinite(out.loss)
    out.loss.backward()
    got_grad = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    for part in ("encoder.upstream.", "encoder.featurizer.", "bridge.", "decoder."):
        assert any(n.startswith(part) for n in got_grad), part


def test_upstream_is_frozen_by_default(ckpts: dict[str, Path], tiny_cfg_with: Any) -> None:
    model = compose(tiny_cfg_with({"name": "s3prl:hubert", "checkpoint": str(ckpts["hubert-group"])}))
    assert model.config.encoder.freeze == ["upstream"]
    trainable = {n for n, p in model.named_parameters() if p.requires_grad and n.startswith("encoder.")}
    assert trainable == {"encoder.featurizer.weights"}


def test_frozen_upstream_keeps_the_layer_weights_trainable(ckpts: dict[str, Path], tiny_cfg_with: Any) -> None:
    model = compose(tiny_cfg_with({"name": "s3prl:hubert", "checkpoint": str(ckpts["hubert-group"]),
                                   "freeze": ["upstream"]}))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad and n.startswith("encoder.")}
    assert trainable == {"encoder.featurizer.weights"}


def test_cli_compose_with_a_config_file(ckpts: dict[str, Path], tiny_cfg_with: Any, tmp_path: Path) -> None:
    config = tiny_cfg_with({"name": "s3prl:hubert", "checkpoint": str(ckpts["hubert-group"])})
    path = tmp_path / "model.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-c", "from nue_core.cli import main; main()", "compose", "--config", str(path),
         "--set", "encoder.layer=1", "--yaml"],
        capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[3],
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stderr
    assert "s3prl:hubert" in result.stdout and "layer: 1" in result.stdout
