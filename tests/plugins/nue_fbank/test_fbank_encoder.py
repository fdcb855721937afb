"""The fbank-transformer encoder: features, lengths, padding invariance, training through SpeechLM."""

import numpy as np
import pytest
import torch

from nue_core.checkpoint import load, save_model
from nue_core.composer import compose
from nue_core.testing import check_plugin
from nue_fbank.features import LogMel, normalize
from tests.conftest import TINY_BRIDGES, TINY_DECODER_CONFIGS, make_audio

TINY = {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "ffn_size": 64, "n_mels": 40, "conv_channels": 8}


def test_plugin_conforms():
    check_plugin("nue_fbank", {"encoder:fbank-transformer": TINY})


def test_log_mel_peaks_at_the_tone_and_counts_frames():
    mel = LogMel(16000, 40, 25.0, 10.0)
    t = torch.arange(16000) / 16000
    low, high = torch.sin(2 * np.pi * 300 * t), torch.sin(2 * np.pi * 3000 * t)
    wave = torch.stack([low, high])
    feats, frames = mel(wave, torch.tensor([16000, 12000]))
    assert frames.tolist() == [(16000 - 400) // 160 + 1, (12000 - 400) // 160 + 1]
    assert feats.shape == (2, frames[0], 40)
    assert torch.all(feats[1, frames[1]:] == 0)
    assert feats[0, 10].argmax() < feats[1, 10].argmax()  # the higher tone lands in a higher mel bin


def test_normalize_uses_valid_frames_only():
    feats = torch.randn(1, 10, 3)
    padded = torch.cat([feats, torch.full((1, 5, 3), 99.0)], dim=1)
    a = normalize(feats, torch.tensor([10]))
    b = normalize(padded, torch.tensor([10]))
    assert torch.allclose(a, b[:, :10], atol=1e-6) and torch.all(b[:, 10:] == 0)
    assert torch.allclose(a.mean(dim=1), torch.zeros(1, 3), atol=1e-5)


def test_global_normalization_removes_level_but_keeps_spectral_shape():
    feats = torch.randn(2, 12, 4) + torch.tensor([0.0, 1.0, 2.0, 3.0])  # a rising spectral shape
    lengths = torch.tensor([12, 7])
    out = normalize(feats, lengths, per_bin=False)
    for i, n in enumerate(lengths.tolist()):
        valid = out[i, :n]
        assert abs(float(valid.mean())) < 1e-5 and abs(float(valid.std(unbiased=False)) - 1) < 1e-4
        assert torch.all(out[i, n:] == 0)
        assert torch.all(valid.mean(0).diff() > 0)  # the shape survives (per-bin CMVN flattens it)
    louder = normalize(feats + 5.0, lengths, per_bin=False)  # a gain is a constant in the log domain
    assert torch.allclose(louder, out, atol=1e-5)
    assert torch.allclose(normalize(feats, lengths).mean(1)[0], torch.zeros(4), atol=1e-5)


def test_global_normalization_encoder_is_padding_invariant():
    model = compose({"encoder": {"name": "fbank", **TINY, "normalization": "global"},
                     "bridge": {"name": "conv", **TINY_BRIDGES["conv+ctc"]},
                     "decoder": {"name": "gpt-neox", "tokenizer": "byte", "config": TINY_DECODER_CONFIGS["gpt-neox"]}})
    enc = model.encoder.eval()
    wave, lens = make_audio([0.9, 0.5])
    with torch.no_grad():
        batched = enc(wave, lens)
        alone = enc(wave[1:, : int(lens[1])], lens[1:])
    n = int(alone.lengths[0])
    assert torch.allclose(batched.hidden[1, :n], alone.hidden[0, :n], atol=1e-5)


def test_spec_augment_only_in_training_and_lengths_match():
    model = compose({"encoder": {"name": "fbank", **TINY}, "bridge": {"name": "conv", **TINY_BRIDGES["conv+ctc"]},
                     "decoder": {"name": "gpt-neox", "tokenizer": "byte", "config": TINY_DECODER_CONFIGS["gpt-neox"]},
                     "ctc_weight": 0.5})
    wave, lens = make_audio([0.9, 0.5])
    enc = model.encoder
    enc.eval()
    with torch.no_grad():
        a, b = enc(wave, lens).hidden, enc(wave, lens).hidden
    assert torch.equal(a, b)
    assert enc(wave, lens).lengths.tolist() == enc.output_lengths(lens).tolist()
    enc.train()
    with torch.no_grad():
        torch.manual_seed(1)
        c = enc(wave, lens).hidden
    assert not torch.equal(a, c)
    out = model.train()(wave, lens, model.target_ids(["one two", "nine"]))
    out.loss.backward()
    assert out.ctc_loss is not None and enc.proj.weight.grad is not None


def test_saved_model_round_trip(tmp_path):
    model = compose({"encoder": {"name": "logmel", **TINY}, "bridge": {"name": "conv"},
                     "decoder": {"name": "llama", "tokenizer": "byte", "config": TINY_DECODER_CONFIGS["llama"]}})
    save_model(model, tmp_path / "m")
    again = load(tmp_path / "m")
    wave, lens = make_audio([0.7])
    with torch.no_grad():
        assert torch.equal(model.eval().encode_speech(wave, lens).embeds, again.encode_speech(wave, lens).embeds)


def test_bad_options_are_named():
    from nue_core.errors import ConfigError

    with pytest.raises(ConfigError, match="divisible"):
        compose({"encoder": {"name": "fbank", "hidden_size": 30, "num_heads": 4}, "bridge": "conv",
                 "decoder": {"name": "llama", "tokenizer": "byte", "config": TINY_DECODER_CONFIGS["llama"]}})


def test_encoder_runs_in_bfloat16_with_float32_features():
    """`--dtype bfloat16` casts the whole model, buffers included; features stay float32 inside."""
    model = compose({"encoder": {"name": "fbank", **TINY}, "bridge": {"name": "conv", **TINY_BRIDGES["conv+ctc"]},
                     "decoder": {"name": "gpt-neox", "tokenizer": "byte", "config": TINY_DECODER_CONFIGS["gpt-neox"]}})
    enc = model.encoder.eval()
    wave, lens = make_audio([0.9, 0.5])
    with torch.no_grad():
        reference = enc(wave, lens).hidden
        enc.to(torch.bfloat16)
        low = enc(wave.to(torch.bfloat16), lens).hidden
    assert low.dtype == torch.bfloat16
    assert torch.allclose(low.float(), reference, atol=0.15)
