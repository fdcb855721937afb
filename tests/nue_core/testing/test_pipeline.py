"""The kit's toys generate through SpeechLM.generate, and check_in_speechlm names what breaks there."""

from __future__ import annotations

import pytest
import torch

from nue_core.generation import GenerationConfig
from nue_core.testing import ConformanceError
from nue_core.testing.pipeline import check_in_speechlm, toy_audio, toy_speechlm
from tests.nue_core.testing.fakes import (
    HOP,
    BatchLeakBridge,
    DetachedEncoder,
    OldProtocolDecoder,
    ToyBridge,
    ToyDecoder,
    ToyEncoder,
)


def _audio(frames: tuple[int, ...] = (9, 16, 5)) -> tuple[torch.Tensor, torch.Tensor]:
    return toy_audio([n * HOP for n in frames], torch.device("cpu"), torch.float32)


@pytest.mark.parametrize("num_beams", [1, 3])
def test_toy_decoder_generates_through_speechlm_generate(num_beams: int) -> None:
    torch.manual_seed(0)
    model = toy_speechlm(decoder=ToyDecoder()).eval()
    waves, lengths = _audio()
    config = GenerationConfig(num_beams=num_beams, max_new_tokens=6, min_new_tokens=6)
    out = model.generate(waves, lengths, config)
    assert [len(ids) for ids in out] == [6, 6, 6]  # eos is forbidden before 6 tokens, 6 is the cap
    assert all(0 <= t < 30 and t != model.tokenizer.eos_id for ids in out for t in ids)
    alone = [model.generate(waves[i : i + 1, :n], lengths[i : i + 1], config)[0]
             for i, n in enumerate(lengths.tolist())]
    assert alone == out


def test_decoder_written_to_the_old_protocol_cannot_generate() -> None:
    # the hole the kit now closes: it trained, passed the old kit, then failed here
    model = toy_speechlm(decoder=OldProtocolDecoder()).eval()
    waves, lengths = _audio()
    model(waves, lengths, [[3, 4, 2]] * 3).loss.backward()
    with pytest.raises(TypeError, match="use_cache"):
        model.generate(waves, lengths, GenerationConfig(max_new_tokens=3))


def test_toy_speechlm_sizes_toys_to_the_part_under_test() -> None:
    model = toy_speechlm(bridge=ToyBridge(5, 7, ctc_vocab=12))
    assert (model.encoder.output_dim, model.decoder.embed_dim) == (5, 7)
    model = toy_speechlm(bridge=ToyBridge(5, 7, ctc_vocab=12), ctc_classes=13, ctc_weight=0.5)
    assert model.decoder.vocab_size == 12 and model.config.ctc_weight == 0.5  # CTC labels are token ids
    decoder = ToyDecoder(dim=6)
    decoder.tokenizer = None  # described only: generation gets a stand-in for eos and pad
    model = toy_speechlm(decoder=decoder)
    assert model.bridge.out_dim == 6 and model.tokenizer.eos_id == 2


def test_toys_pass_in_a_speechlm_with_and_without_a_ctc_head() -> None:
    waves, lengths = _audio()
    decoder = ToyDecoder()
    check_in_speechlm(decoder, toy_speechlm(decoder=decoder), waves, lengths)
    bridge = ToyBridge(8, 8, ctc_vocab=30)
    check_in_speechlm(bridge, toy_speechlm(bridge=bridge, ctc_classes=31, ctc_weight=0.5), waves, lengths,
                      ctc_weight=0.3)


def test_batched_generation_that_differs_from_one_by_one_is_named() -> None:
    bridge = BatchLeakBridge(8, 8)
    waves, lengths = _audio()
    with pytest.raises(ConformanceError, match=r"^BatchLeakBridge: SpeechLM generate failed: greedy search: "
                                               r"item \d gave .* in a batch of 3 but .* alone"):
        check_in_speechlm(bridge, toy_speechlm(bridge=bridge), waves, lengths)


def test_a_part_that_gets_no_gradient_in_training_is_named() -> None:
    encoder = DetachedEncoder()
    waves, lengths = _audio()
    with pytest.raises(ConformanceError, match="^DetachedEncoder: SpeechLM training failed: no trainable parameter"):
        check_in_speechlm(encoder, toy_speechlm(encoder=encoder), waves, lengths)


def test_a_crash_in_generation_is_named_with_its_cause() -> None:
    bridge = ToyBridge(8, 8)
    model = toy_speechlm(bridge=bridge)
    waves, lengths = _audio()
    check_in_speechlm(bridge, model, waves, lengths)
    model.decoder.reorder_cache = lambda cache, index: 1 / 0  # type: ignore[method-assign]
    with pytest.raises(ConformanceError, match=r"SpeechLM generate failed: beam search \(3 beams\) raised "
                                               "ZeroDivisionError") as info:
        check_in_speechlm(bridge, model, waves, lengths)
    assert isinstance(info.value.__cause__, ZeroDivisionError)


def test_toys_leave_the_callers_rng_alone() -> None:
    encoder = ToyEncoder()
    state = torch.get_rng_state()
    toy_speechlm(encoder=encoder)
    assert torch.equal(torch.get_rng_state(), state)


def test_outputs_that_part_at_a_near_tie_are_accepted() -> None:
    from nue_core.testing.pipeline import _near_tie

    decoder = ToyDecoder()
    with torch.no_grad():  # tokens 5 and 6 get the same logit everywhere: float noise may pick either
        decoder.head.weight[6] = decoder.head.weight[5]
        decoder.head.bias[6] = decoder.head.bias[5]
    model = toy_speechlm(decoder=decoder).eval()
    waves, lengths = _audio((6,))
    assert _near_tie(model, waves, lengths, [9, 5, 3], [9, 6], atol=1e-5)
    assert not _near_tie(model, waves, lengths, [9, 5, 3], [9, 7], atol=1e-5)
    assert _near_tie(model, waves, lengths, [5], [6, 4], atol=1e-5)  # the first token: an empty prefix
