"""check_decoder passes a correct toy decoder and names the check a broken one fails."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from nue_core.protocols import DecoderOutput
from nue_core.testing import ConformanceError, check_decoder
from tests.nue_core.testing.fakes import MaskBlindDecoder, NoCacheDecoder, ToyDecoder, UpperTokenizer


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


def test_decoder_without_cache_fails_unless_cache_check_is_off() -> None:
    with pytest.raises(ConformanceError, match="NoCacheDecoder: kv cache failed: forward returned cache=None"):
        check_decoder(NoCacheDecoder())
    check_decoder(NoCacheDecoder(), check_cache=False)


def test_decoder_with_wrong_vocab_size_fails() -> None:
    decoder = ToyDecoder()
    decoder.head = nn.Linear(8, 29)
    with pytest.raises(ConformanceError, match=r"output shape failed: logits are \(2, 8, 29\), expected \(2, 8, 30\)"):
        check_decoder(decoder)


def test_decoder_tokenizer_must_round_trip() -> None:
    with pytest.raises(ConformanceError, match="tokenizer round trip failed: .*'HELLO WORLD'"):
        check_decoder(ToyDecoder(tokenizer=UpperTokenizer()))
    decoder = ToyDecoder()
    decoder.tokenizer = None  # described without tokenizer files: allowed
    check_decoder(decoder)


def test_decoder_lora_targets_must_be_strings() -> None:
    decoder = ToyDecoder()
    decoder.lora_targets = "head"  # type: ignore[assignment]
    with pytest.raises(ConformanceError, match="'lora_targets' must be a list of str"):
        check_decoder(decoder)


def test_decoder_gradient_must_reach_inputs_embeds() -> None:
    decoder = ToyDecoder()
    decoder.forward = lambda e, m, p, c=None: ToyDecoder.forward(decoder, e.detach(), m, p, c)  # type: ignore
    with pytest.raises(ConformanceError, match="ToyDecoder: gradient flow failed"):
        check_decoder(decoder, require_all_grads=False)


def test_decoder_with_a_cache_that_forgets_fails() -> None:
    class ForgetfulDecoder(ToyDecoder):
        def forward(self, e: torch.Tensor, m: torch.Tensor, p: torch.Tensor, cache: Any = None) -> DecoderOutput:
            out = super().forward(e, m[:, -e.shape[1] :] if cache is not None else m, p, None)
            return DecoderOutput(out.logits, out.cache)

    with pytest.raises(ConformanceError, match="ForgetfulDecoder: kv cache failed: a step with the cache differs"):
        check_decoder(ForgetfulDecoder())
