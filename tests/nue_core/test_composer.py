"""compose() over every first-party encoder x bridge x decoder, from tiny configs."""

import itertools

import pytest
import torch

from nue_core.composer import compose, resolve_config
from nue_core.errors import ConfigError, UnknownComponentError
from tests.conftest import TINY_BRIDGES, TINY_DECODER_CONFIGS, make_audio, tiny_config

TEXTS = ["hello world", "seven"]
COMBOS = list(itertools.product(["hubert", "wav2vec2"], TINY_BRIDGES, TINY_DECODER_CONFIGS))


def _step(model, seconds=(0.6, 0.4)):
    wave, lens = make_audio(list(seconds))
    return model(wave, lens, model.target_ids(TEXTS[: len(seconds)]))


@pytest.mark.parametrize("encoder,bridge,decoder", COMBOS, ids=["-".join(c) for c in COMBOS])
def test_every_combination_trains_a_step(encoder, bridge, decoder):
    torch.manual_seed(0)
    model = compose(tiny_config(encoder, bridge, decoder, ctc_weight=0.5))
    out = _step(model)
    assert torch.isfinite(out.loss)
    if bridge in ("conv+ctc", "ctc-compress"):
        assert out.ctc_loss is not None and torch.isfinite(out.ctc_loss)
    out.loss.backward()
    for name, p in model.named_parameters():
        if p.requires_grad and name.startswith(("bridge.", "decoder.model.")) and "lm_head" not in name:
            pass
    got_grad = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert any(n.startswith("encoder.") for n in got_grad)
    assert any(n.startswith("bridge.") for n in got_grad)
    assert any(n.startswith("decoder.") for n in got_grad)


def _grad_names(model):
    out = _step(model)
    out.loss.backward()
    return {n for n, p in model.named_parameters() if p.grad is not None}


def test_gradients_reach_exactly_the_trainable_parameters():
    cfg = tiny_config()
    cfg["encoder"]["freeze"] = ["feature_extractor"]
    cfg["decoder"]["trainable"] = False
    model = compose(cfg)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(not n.startswith("decoder.") for n in trainable)
    assert not any(".feature_extractor." in n for n in trainable)
    assert _grad_names(model) <= trainable
    assert any(n.startswith("encoder.") for n in _grad_names(model))


def test_lora_on_decoder_trains_only_adapter_and_bridge():
    cfg = tiny_config()
    cfg["encoder"]["trainable"] = False
    cfg["decoder"]["lora"] = {"r": 4, "alpha": 8}
    model = compose(cfg)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    decoder_trainable = {n for n in trainable if n.startswith("decoder.")}
    assert decoder_trainable and all("lora_" in n for n in decoder_trainable)
    assert all(n.startswith(("bridge.", "decoder.")) for n in trainable)
    grads = _grad_names(model)
    assert grads <= trainable and any("lora_B" in n for n in grads)


def test_unknown_freeze_entry_is_an_error():
    cfg = tiny_config()
    cfg["encoder"]["freeze"] = ["feature_extractr"]
    with pytest.raises(ConfigError, match="feature_extractr"):
        compose(cfg)


def test_padding_does_not_change_loss_or_speech_embeddings():
    torch.manual_seed(0)
    model = compose(tiny_config()).eval()
    wave, lens = make_audio([0.7, 0.45])
    targets = model.target_ids(TEXTS)
    with torch.no_grad():
        together = model(wave, lens, targets)
        padded = torch.nn.functional.pad(wave, (0, 3000))
        more_pad = model(padded, lens, targets)
        alone = [model(wave[i : i + 1, : lens[i]], lens[i : i + 1], [targets[i]]) for i in range(2)]
    assert torch.allclose(together.loss, more_pad.loss, atol=1e-5)
    for i in range(2):
        n = int(together.speech.lengths[i])
        assert n == int(alone[i].speech.lengths[0])
        assert torch.allclose(together.speech.embeds[i, :n], alone[i].speech.embeds[0, :n], atol=1e-5)
    # loss is a mean over tokens: recombine the per-item means weighted by token counts
    counts = torch.tensor([len(t) for t in targets], dtype=torch.float)
    per_item = torch.stack([a.lm_loss for a in alone])
    assert torch.allclose(together.lm_loss, (per_item * counts).sum() / counts.sum(), atol=1e-5)


def test_aliases_resolve_to_canonical_names():
    cfg = tiny_config()
    cfg["decoder"]["name"] = "neox"
    resolved = resolve_config(cfg)
    assert resolved.decoder.name == "gpt-neox"


def test_typo_gets_did_you_mean():
    cfg = tiny_config()
    cfg["encoder"]["name"] = "hubret"
    with pytest.raises(UnknownComponentError, match="did you mean 'hubert'"):
        compose(cfg)


def test_bad_plugin_option_names_part_and_key():
    cfg = tiny_config()
    cfg["bridge"]["kernel_size"] = [4]
    with pytest.raises(ConfigError) as err:
        compose(cfg)
    assert "bridge 'conv'" in str(err.value) and "kernel_size" in str(err.value) and "kernel_sizes" in str(err.value)


def test_paper_preset_describes_on_meta_without_weights():
    model = compose("nue-asr-paper", describe=True)
    assert all(p.is_meta for p in model.parameters())
    assert model.decoder.embed_dim == 2816 and model.encoder.output_dim == 768
    total = sum(p.numel() for p in model.parameters())
    assert 3.6e9 < total < 3.9e9
    # the bridge is the released one: 2 convs 768->768 (k=4) + Linear 768->2816
    bridge = sum(p.numel() for p in model.bridge.parameters())
    assert bridge == 2 * (768 * 768 * 4 + 768) + 768 * 2816 + 2816


@pytest.mark.parametrize("preset", ["tiny", "tiny-llama", "tiny-ctc-compress"])
def test_tiny_presets_run(preset):
    model = compose(preset)
    assert torch.isfinite(_step(model).loss)


@pytest.mark.parametrize("part, key, value, message", [
    ("decoder", "num_hidden_layers", -2, "decoder.config.num_hidden_layers: must be a positive whole number, got -2"),
    ("decoder", "num_hidden_layers", 0, "decoder.config.num_hidden_layers: must be a positive whole number, got 0"),
    ("encoder", "hidden_size", 0, "encoder.config.hidden_size: must be a positive whole number, got 0"),
    ("decoder", "vocab_size", True, "decoder.config.vocab_size: must be a positive whole number, got True (YAML"),
    ("decoder", "intermediate_size", 64.5, "decoder.config.intermediate_size: must be a positive whole number, got 64.5"),
    ("encoder", "conv_dim", [32, -32, 32], "encoder.config.conv_dim[1]: must be a positive whole number, got -32"),
])
def test_sizes_that_are_not_positive_are_refused_naming_the_field(part, key, value, message):
    cfg = tiny_config()
    cfg[part]["config"][key] = value
    for describe in (True, False):
        with pytest.raises(ConfigError) as err:
            compose(cfg, describe=describe)
        assert message in str(err.value)


def test_plugin_options_refuse_booleans_for_numbers_and_keep_their_own_bounds():
    cfg = tiny_config()
    cfg["bridge"]["padding"] = True  # YAML `padding: yes`
    with pytest.raises(ConfigError, match=r"bridge 'conv' options.*\n  padding: a boolean is not a number"):
        compose(cfg)
    fbank = tiny_config(encoder="fbank-transformer")
    fbank["encoder"] = {"name": "fbank-transformer", "hidden_size": 32, "num_heads": 2, "ffn_size": 64, "num_layers": 0}
    assert compose(fbank).encoder.output_dim == 32  # the plugin allows 0 layers: its bound, not ours
    fbank["encoder"]["num_layers"] = 20_000
    with pytest.raises(ConfigError, match=r"encoder.num_layers: 20,000 layers is beyond what nue builds"):
        compose(fbank, describe=True)


def test_a_model_larger_than_the_memory_is_refused_before_it_is_built(monkeypatch):
    import nue_core.composer as composer
    from nue_core.size_check import ModelTooLargeError

    built = []
    real = composer._compose
    monkeypatch.setattr(composer, "_compose", lambda *a, **k: built.append(k["describe"]) or real(*a, **k))
    # 1. the size fields alone (2 layers of width 32, ffn 64: ~1e4 weights per part, 41 KB) already say no
    monkeypatch.setattr(composer, "available_memory", lambda: 50_000)
    with pytest.raises(ModelTooLargeError, match=r"^(en|de)coder.config: ~1e\+04 parameters \(41 KB in float32\) "
                                                  r"exceeds the available memory \(50 KB\)"):
        compose(tiny_config())
    assert built == []  # nothing built, not even on the meta device
    # 2. the fields allow it, the meta build counts 346 KB of weights and buffers
    monkeypatch.setattr(composer, "available_memory", lambda: 200_000)
    with pytest.raises(ModelTooLargeError, match=r"the model needs 346 KB for its weights \(encoder: 4.3e\+04 "
                                                  r"parameters, 173 KB; .*\), more than the available memory \(200 KB\)"):
        compose(tiny_config())
    assert built == [True]  # measured on the meta device; never built for real
    assert all(p.is_meta for p in compose(tiny_config(), describe=True).parameters())  # describing needs no memory
