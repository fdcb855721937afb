"""check_decoder passes a correct toy decoder and names the check a broken one fails."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from nue_core.testing import ConformanceError, check_decoder
from tests.nue_core.testing.fakes import (
    ForgetfulDecoder,
    MaskBlindDecoder,
    NoCacheDecoder,
    OldProtocolDecoder,
    PositionlessCacheDecoder,
    StaleCacheDecoder,
    ToyDecoder,
    UnorderedCacheDecoder,
    UpperTokenizer,
)


def test_correct_decoder_passes() -> None:
    decoder = ToyDecoder()
    check_decoder(decoder)
    check_decoder(decoder, seq_lengths=(1, 6, 3))


def test_decoder_that_ignores_the_mask_fails_left_padding() -> None:
    with pytest.raises(ConformanceError, match="^MaskBlindDecoder: padding invariance failed: item 0: logits"):
        check_decoder(MaskBlindDecoder())


def test_decoder_that_ignores_position_ids_fails() -> None:
    decoder = ToyDecoder()
    decoder.positions.forward = lambda ids: decoder.positions.weight[: ids.shape[1]][None]  # type: ignore
    with pytest.raises(ConformanceError, match="ToyDecoder: padding invariance failed"):
        check_decoder(decoder)


def test_decoder_written_to_the_old_protocol_fails_naming_use_cache() -> None:
    # generation calls decoder(..., cache=..., use_cache=True): a forward without use_cache cannot generate
    with pytest.raises(ConformanceError, match="^OldProtocolDecoder: forward signature failed: ") as info:
        check_decoder(OldProtocolDecoder())
    message = str(info.value)
    assert "use_cache=True" in message and "unexpected keyword argument 'use_cache'" in message


@pytest.mark.parametrize(
    ("decoder", "check", "detail"),
    [
        (NoCacheDecoder(), "kv cache", "use_cache=True) returned cache=None"),
        (ForgetfulDecoder(), "kv cache", "step 1 with the cache differs from a full forward without cache"),
        (PositionlessCacheDecoder(), "kv cache", "step 1 with the cache differs"),
        (StaleCacheDecoder(), "kv cache", "a step with the cache, as generation makes it: forward failed: raised"),
        (UnorderedCacheDecoder(), "reorder_cache", "a step after expanding the rows differs"),
    ],
    ids=lambda v: v if isinstance(v, str) else type(v).__name__,
)
def test_decoder_that_cannot_generate_fails_with_the_reason_named(decoder: nn.Module, check: str, detail: str) -> None:
    with pytest.raises(ConformanceError, match=f"^{type(decoder).__name__}: {check} failed: ") as info:
        check_decoder(decoder)
    assert detail in str(info.value)


def test_decoder_without_cache_passes_only_with_cache_check_off() -> None:
    check_decoder(NoCacheDecoder(), check_cache=False)  # trains in a SpeechLM; generation is skipped


def test_decoder_with_wrong_vocab_size_fails() -> None:
    decoder = ToyDecoder()
    decoder.head = nn.Linear(8, 29)
    with pytest.raises(ConformanceError, match=r"output shape failed: logits are \(2, 8, 29\), expected \(2, 8, 30\)"):
        check_decoder(decoder)


def test_decoder_tokenizer_must_round_trip() -> None:
    with pytest.raises(ConformanceError, match="tokenizer round trip failed: .*'HELLO WORLD'"):
        check_decoder(ToyDecoder(tokenizer=UpperTokenizer()))
    decoder = ToyDecoder()
    decoder.tokenizer = None  # described without tokenizer files: allowed, and still generates in the kit
    check_decoder(decoder)


def test_decoder_tokenizer_ids_must_index_the_logits() -> None:
    decoder = ToyDecoder()
    decoder.tokenizer.eos_id = 30  # type: ignore[misc]  # one past the vocabulary
    with pytest.raises(ConformanceError, match=r"tokenizer failed: eos_id is 30, expected an int in \[0, 30\)"):
        check_decoder(decoder)


def test_decoder_lora_targets_must_be_strings() -> None:
    decoder = ToyDecoder()
    decoder.lora_targets = "head"  # type: ignore[assignment]
    with pytest.raises(ConformanceError, match="'lora_targets' must be a list of str"):
        check_decoder(decoder)


def test_decoder_gradient_must_reach_inputs_embeds() -> None:
    decoder = ToyDecoder()

    def detached(e: torch.Tensor, m: torch.Tensor, p: torch.Tensor, cache: Any = None, use_cache: Any = None) -> Any:
        return ToyDecoder.forward(decoder, e.detach(), m, p, cache, use_cache)

    decoder.forward = detached  # type: ignore[method-assign]
    with pytest.raises(ConformanceError, match="ToyDecoder: gradient flow failed"):
        check_decoder(decoder, require_all_grads=False)
