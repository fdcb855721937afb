"""Batched generation equals one-by-one; beam search with one beam equals greedy."""

import pytest
import torch

from nue_core.composer import compose
from nue_core.errors import ConfigError
from nue_core.generation import GenerationConfig, is_looping
from tests.conftest import make_audio, tiny_config

SECONDS = [0.9, 0.35, 0.6, 0.5]


def _model(bridge="conv", decoder="gpt-neox"):
    torch.manual_seed(0)
    model = compose(tiny_config(bridge=bridge, decoder=decoder)).eval()
    # A random tiny LM emits eos rarely; sharpen its head so outputs vary in length and content.
    with torch.no_grad():
        head = model.decoder.model.get_output_embeddings().weight
        head.mul_(8.0)
    return model


@pytest.mark.parametrize("bridge,decoder", [("conv", "gpt-neox"), ("ctc-compress", "llama"), ("qformer-window", "hf-causal-lm")])
def test_batched_greedy_equals_one_by_one(bridge, decoder):
    model = _model(bridge, decoder)
    wave, lens = make_audio(SECONDS, seed=1)
    cfg = GenerationConfig(repetition_limit=0)
    batched = model.generate(wave, lens, cfg)
    alone = [model.generate(wave[i : i + 1, : lens[i]], lens[i : i + 1], cfg)[0] for i in range(len(SECONDS))]
    assert batched == alone
    assert len({len(x) for x in batched}) > 1 or any(batched)  # not all trivially empty


def test_max_new_tokens_follows_audio_length():
    model = _model()
    wave, lens = make_audio([1.0, 0.25], seed=2)
    cfg = GenerationConfig(repetition_limit=0, min_new_tokens=10_000)  # eos never allowed: limits decide
    limits = cfg.token_limits(lens.float() / 16000)
    assert limits.tolist() == [int(4 * 1.0 + 20 + 0.5), int(4 * 0.25 + 20 + 0.5)]
    out = model.generate(wave, lens, cfg)
    assert [len(o) for o in out] == limits.tolist()
    assert [len(o) for o in model.generate(wave, lens, GenerationConfig(max_new_tokens=3, min_new_tokens=10))] == [3, 3]


def test_beam_one_equals_greedy_and_beams_are_batch_consistent():
    model = _model()
    wave, lens = make_audio(SECONDS, seed=3)
    greedy = model.generate(wave, lens, GenerationConfig(repetition_limit=0))
    beam1 = model.generate(wave, lens, GenerationConfig(num_beams=1, force_beam_search=True, repetition_limit=0))
    assert beam1 == greedy
    cfg = GenerationConfig(num_beams=3, repetition_limit=0)
    beams = model.generate(wave, lens, cfg)
    alone = [model.generate(wave[i : i + 1, : lens[i]], lens[i : i + 1], cfg)[0] for i in range(len(SECONDS))]
    assert beams == alone


def test_min_new_tokens_forbids_early_eos():
    model = _model()
    forward, eos = model.decoder.forward, model.tokenizer.eos_id

    def eos_loving_forward(*args, **kwargs):  # eos becomes the most likely token everywhere
        out = forward(*args, **kwargs)
        out.logits[..., eos] += 1e4
        return out

    model.decoder.forward = eos_loving_forward
    wave, lens = make_audio([0.5], seed=4)
    for min_new in (0, 2, 5):
        out = model.generate(wave, lens, GenerationConfig(min_new_tokens=min_new, repetition_limit=0))
        assert len(out[0]) == min_new


def test_repetition_guard_stops_a_loop_at_the_limit():
    model = _model()
    tok = 65
    forward = model.decoder.forward

    def looping_forward(*args, **kwargs):  # one token wins everywhere: a loop of one
        out = forward(*args, **kwargs)
        out.logits[..., tok] += 1e4
        return out

    model.decoder.forward = looping_forward
    wave, lens = make_audio([1.0], seed=6)
    limit = int(4 * 1.0 + 20 + 0.5)
    assert model.generate(wave, lens, GenerationConfig(repetition_limit=0)) == [[tok] * limit]
    assert model.generate(wave, lens, GenerationConfig(repetition_limit=12)) == [[tok] * 12]
    assert model.generate(wave, lens, GenerationConfig(repetition_limit=12, num_beams=2)) == [[tok] * 12]


def test_repetition_guard():
    assert is_looping([1, 2, 3] + [7] * 5, limit=5)
    assert is_looping([9] + [4, 5] * 3, limit=3)
    assert not is_looping([4, 5] * 2 + [6], limit=3)
    assert not is_looping([1] * 10, limit=0)


def test_model_config_decode_settings_are_the_default():
    cfg = tiny_config(decode={"min_new_tokens": 0, "tokens_per_second": 1.0, "extra_tokens": 2, "repetition_limit": 5})
    model = compose(cfg).eval()
    gen = GenerationConfig.for_model(model.config)
    assert (gen.min_new_tokens, gen.tokens_per_second, gen.extra_tokens, gen.repetition_limit) == (0, 1.0, 2, 5)
    assert GenerationConfig.for_model(model.config, num_beams=3, max_new_tokens=None).num_beams == 3
    # An explicit run option wins, 0 included (0 = guard off); None keeps the model's value.
    assert GenerationConfig.for_model(model.config, repetition_limit=0).repetition_limit == 0
    assert GenerationConfig.for_model(model.config, repetition_limit=None).repetition_limit == 5
    assert GenerationConfig.for_model(compose(tiny_config()).config).repetition_limit == 12  # nue's own default
    with pytest.raises(ConfigError, match="decode.repetition_limit"):
        compose(tiny_config(decode={"repetition_limit": -1}))
    wave, lens = make_audio([1.0])
    assert len(model.generate(wave, lens)[0]) <= int(1.0 * 1.0 + 2 + 0.5)


@pytest.mark.parametrize("bridge", ["ctc-compress", "conv+ctc"])
def test_joint_ctc_decoding_is_batch_consistent_and_beam_one_equals_greedy(bridge):
    model = _model(bridge)
    with torch.no_grad():  # a sharper CTC head, so its scores matter next to the decoder's
        model.bridge.ctc_head.weight.mul_(6.0)
    wave, lens = make_audio(SECONDS, seed=4)
    cfg = GenerationConfig(repetition_limit=0, ctc_weight=0.5, ctc_candidates=16, max_new_tokens=6)
    joint = model.generate(wave, lens, cfg)
    alone = [model.generate(wave[i : i + 1, : lens[i]], lens[i : i + 1], cfg)[0] for i in range(len(SECONDS))]
    assert joint == alone
    beam1 = model.generate(wave, lens, GenerationConfig(repetition_limit=0, ctc_weight=0.5, ctc_candidates=16,
                                                        max_new_tokens=6, num_beams=1, force_beam_search=True))
    assert beam1 == joint
    plain = model.generate(wave, lens, GenerationConfig(repetition_limit=0, max_new_tokens=6))
    assert joint != plain  # the CTC scores changed the outcome
    beams = GenerationConfig(repetition_limit=0, ctc_weight=0.5, ctc_candidates=16, max_new_tokens=6, num_beams=3)
    batched = model.generate(wave, lens, beams)
    assert batched == [model.generate(wave[i : i + 1, : lens[i]], lens[i : i + 1], beams)[0] for i in range(len(SECONDS))]


def test_joint_ctc_decoding_needs_a_ctc_head():
    model = _model("conv")
    wave, lens = make_audio([0.5], seed=5)
    with pytest.raises(ValueError, match="no CTC head"):
        model.generate(wave, lens, GenerationConfig(ctc_weight=0.3))
    with pytest.raises(ConfigError, match="decode.ctc_weight 0.5: joint CTC decoding needs a bridge with a CTC head"):
        compose({**tiny_config(bridge="conv"), "decode": {"ctc_weight": 0.5}})
    assert compose({**tiny_config(bridge="conv+ctc"), "decode": {"ctc_weight": 0.5}}).config.decode.ctc_weight == 0.5
