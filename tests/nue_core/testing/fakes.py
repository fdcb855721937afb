"""Broken variants of the kit's own toy parts (``nue_core.testing.toys``, the correct ones).

Each breaks one promise of ``nue_core.protocols``; the tests check that the kit names it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from nue_core.protocols import BridgeOutput, DecoderOutput, EncoderOutput
from nue_core.testing.toys import HOP, CharTokenizer, ToyBridge, ToyDecoder, ToyEncoder

__all__ = [  # the correct toys are re-exported: the tests import every part from here
    "HOP", "CharTokenizer", "ToyBridge", "ToyDecoder", "ToyEncoder",
]

# ----------------------------------------------------------------------------- toy encoder


class TimeNormEncoder(ToyEncoder):
    """Broken: subtracts the mean over the whole padded time axis."""

    def features(self, waveforms: torch.Tensor) -> torch.Tensor:
        hidden = super().features(waveforms)
        return hidden - hidden.mean(dim=1, keepdim=True)


class DetachedEncoder(ToyEncoder):
    def features(self, waveforms: torch.Tensor) -> torch.Tensor:
        return super().features(waveforms).detach()


class UnmaskedEncoder(ToyEncoder):
    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> EncoderOutput:
        return EncoderOutput(self.features(waveforms), lengths // HOP)


class UnusedLayerEncoder(ToyEncoder):
    def __init__(self) -> None:
        super().__init__()
        self.unused = nn.Linear(2, 2)


class NanGradEncoder(ToyEncoder):
    def features(self, waveforms: torch.Tensor) -> torch.Tensor:
        hidden = super().features(waveforms)
        return hidden + torch.sqrt(self.proj.bias.sum() * 0.0)  # adds 0, but d sqrt(0) = inf: NaN grad


class ShortClipEncoder(ToyEncoder):
    """Crashes on a clip of one frame, which output_lengths (and so the transcriber) admits."""

    def features(self, waveforms: torch.Tensor) -> torch.Tensor:
        if waveforms.shape[1] < 2 * HOP:
            raise ValueError("need at least two frames of audio")
        return super().features(waveforms)


class ParameterFreeEncoder(ToyEncoder):
    """Frames cut to 8 samples, no weights: the transcriber cannot read the input dtype off a parameter."""

    def __init__(self) -> None:
        super().__init__()
        del self.proj
        self.freeze_groups = {}

    def features(self, waveforms: torch.Tensor) -> torch.Tensor:
        t = waveforms.shape[1] // HOP
        return waveforms[:, : t * HOP].reshape(len(waveforms), t, HOP)[..., : self.output_dim]


# ----------------------------------------------------------------------------- toy bridge


class TimeNormBridge(ToyBridge):
    def pooled(self, hidden: torch.Tensor) -> torch.Tensor:
        x = super().pooled(hidden)
        return x - x.mean(dim=1, keepdim=True)


class OverlongBridge(ToyBridge):
    def output_lengths(self, frame_lengths: torch.Tensor) -> torch.Tensor:
        return frame_lengths // 4


class BlockingBridge(ToyBridge):
    """Broken: its output does not depend on the input, so the encoder could never train."""

    def pooled(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(super().pooled(hidden))


class ShortInputBridge(ToyBridge):
    """Crashes on inputs of under 3 frames although output_lengths gives them a vector."""

    def pooled(self, hidden: torch.Tensor) -> torch.Tensor:
        if hidden.shape[1] < 3:
            raise ValueError("need 3 frames")
        return super().pooled(hidden)


class BatchLeakBridge(ToyBridge):
    """Negates its vectors in a batch of more than one: an item decodes differently batched than
    alone (check_bridge's padding invariance catches it before the SpeechLM run does)."""

    def forward(self, hidden: torch.Tensor, lengths: torch.Tensor) -> BridgeOutput:
        out = super().forward(hidden, lengths)
        out.embeds = -out.embeds if len(hidden) > 1 else out.embeds
        return out


class BlanklessCtcBridge(ToyBridge):
    """Returns CTC logits but does not say which class is the blank."""

    def __init__(self) -> None:
        super().__init__(16, 24, ctc_vocab=30)
        self.ctc_blank_id = None


# ----------------------------------------------------------------------------- toy decoder


class MaskBlindDecoder(ToyDecoder):
    def mixed(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return super().mixed(x, torch.ones_like(mask))


class NoCacheDecoder(ToyDecoder):
    def forward(self, *args: Any, **kwargs: Any) -> DecoderOutput:
        return DecoderOutput(super().forward(*args, **kwargs).logits, None)


class OldProtocolDecoder(ToyDecoder):
    """Written to the protocol before ``use_cache``: generation's call is a TypeError."""

    def forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor,  # type: ignore[override]
                position_ids: torch.Tensor, cache: Any = None) -> DecoderOutput:
        return super().forward(inputs_embeds, attention_mask, position_ids, cache, use_cache=True)


class ForgetfulDecoder(ToyDecoder):
    """Ignores the cache it is given: a step sees only the new token."""

    def forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
                cache: Any = None, use_cache: bool | None = None) -> DecoderOutput:
        mask = attention_mask[:, -inputs_embeds.shape[1] :]
        return super().forward(inputs_embeds, mask, position_ids, None, use_cache)


class PositionlessCacheDecoder(ToyDecoder):
    """Caches the inputs without their position embeddings: later steps see other values."""

    def forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
                cache: Any = None, use_cache: bool | None = None) -> DecoderOutput:
        out = super().forward(inputs_embeds, attention_mask, position_ids, cache, use_cache)
        if out.cache is not None:
            out.cache = torch.cat([out.cache[:, : -inputs_embeds.shape[1]], inputs_embeds], dim=1)
        return out


class StaleCacheDecoder(ToyDecoder):
    """Returns the cache it was given, not extended by the new token: the next step's mask is longer."""

    def forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
                cache: Any = None, use_cache: bool | None = None) -> DecoderOutput:
        out = super().forward(inputs_embeds, attention_mask, position_ids, cache, use_cache)
        return DecoderOutput(out.logits, cache if cache is not None else out.cache)


class UnorderedCacheDecoder(ToyDecoder):
    """reorder_cache keeps the rows in their old order (repeats right, order wrong)."""

    def reorder_cache(self, cache: Any, index: torch.Tensor) -> Any:
        return cache.index_select(0, index.sort().values)


class UpperTokenizer(CharTokenizer):
    def decode(self, ids: list[int]) -> str:
        return super().decode(ids).upper()
