"""Any other s3prl upstream (``wavlm``, ``hf_hubert_custom``, ``hubert_base`` ...) through s3prl's hub.

The upstream is built by the hub function of its name, with every ``torch.load`` forced to
``weights_only=True``. s3prl upstreams report their downsample rate but not their width or depth,
so one forward pass over 1 s of silence finds them, as s3prl's own ``Featurizer`` does; this is the
one place nue-asr does that. Items are run one at a time (s3prl pads a batch internally, and most
upstreams then leak padding into every item), so the output is padding-invariant by construction.
Frame counts follow s3prl's ``S3PRLUpstream``: ``ceil(samples / downsample_rate)``, an upstream's
output trimmed, or padded by repeating its last frame, to that.

Shape legend: b = batch, s = audio samples, t = frames, d = width.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from nue_core.errors import ConfigError
from nue_core.lengths import length_mask
from nue_core.protocols import EncoderOutput
from nue_s3prl.featurizer import Featurizer, Layer

SAMPLE_RATE = 16000
# The shortest input an upstream runs on: the 25 ms receptive field of the wav2vec2/HuBERT conv
# front end (and the window of the fbank-based upstreams). Shorter clips still get the frame
# count ``output_lengths`` promises, so they are zero-padded to this before the upstream sees them.
MIN_UPSTREAM_SAMPLES = 400


def match_length(hidden: torch.Tensor, frames: int) -> torch.Tensor:
    """(t, d) -> (frames, d): trimmed, or padded by repeating the last frame (s3prl's convention)."""
    if hidden.shape[0] >= frames:
        return hidden[:frames]
    return torch.cat([hidden, hidden[-1:].expand(frames - hidden.shape[0], -1)], dim=0)


class S3PRLHubEncoder(nn.Module):
    """An s3prl hub upstream as an ``Encoder``.

    Args:
        upstream: the module the hub function returned (called with a list of 1-D waveforms).
        layer: hidden state to output (index, 'last' or 'weighted').
        export: options ``export_options`` returns.
    """

    def __init__(self, upstream: nn.Module, layer: Layer, export: dict[str, Any]) -> None:
        super().__init__()
        self.upstream = upstream
        rate = upstream.get_downsample_rates("hidden_states")
        if not isinstance(rate, int):
            raise ConfigError(f"upstream {export.get('upstream')!r} has per-layer downsample rates {rate}; "
                              "only upstreams with one rate for every layer are supported")
        self.downsample_rate = rate
        num_states, self.output_dim = self._probe()
        self.featurizer = Featurizer(num_states, layer)
        self._export = export
        self.sample_rate: int = SAMPLE_RATE
        self.frame_rate_hz: float = SAMPLE_RATE / rate
        self.freeze_groups: dict[str, list[str]] = {"upstream": ["upstream."]}

    def _probe(self) -> tuple[int, int]:
        """(number of hidden states, width) from one forward pass over 1 s of silence."""
        was_training = self.upstream.training
        self.upstream.eval()
        device = next(self.upstream.parameters(), torch.empty(0)).device
        with torch.no_grad():
            states = self.upstream([torch.zeros(SAMPLE_RATE, device=device)])["hidden_states"]
        self.upstream.train(was_training)
        widths = {int(h.shape[-1]) for h in states}
        if len(widths) != 1:
            raise ConfigError(f"upstream hidden states have different widths {sorted(widths)}; cannot stack them")
        return len(states), widths.pop()

    def output_lengths(self, sample_lengths: torch.Tensor) -> torch.Tensor:
        """(b,) valid samples -> (b,) frames: ceil(samples / downsample_rate)."""
        lengths = sample_lengths.long()
        return torch.div(lengths - 1, self.downsample_rate, rounding_mode="floor").clamp(min=-1) + 1

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> EncoderOutput:
        """waveforms (b, s), lengths (b,) -> hidden (b, t, d) zero past each length, lengths (b,)."""
        frames = self.output_lengths(lengths).to(waveforms.device)
        per_item = []  # per item: list of (t_i, d), one per hidden state
        for wave, n, f in zip(waveforms, lengths.tolist(), frames.tolist()):
            item = wave[: int(n)]
            if item.shape[0] < MIN_UPSTREAM_SAMPLES:
                item = nn.functional.pad(item, (0, MIN_UPSTREAM_SAMPLES - item.shape[0]))
            states = self.upstream([item])["hidden_states"]
            per_item.append([match_length(h[0], int(f)) for h in states])
        pad = nn.utils.rnn.pad_sequence
        states = [pad([item[k] for item in per_item], batch_first=True) for k in range(len(per_item[0]))]
        mask = length_mask(frames, states[0].shape[1])[..., None]  # (b, t, 1)
        hidden = self.featurizer(states).masked_fill(~mask, 0.0)
        return EncoderOutput(hidden=hidden, lengths=frames, all_layers=tuple(states))

    def export_options(self, folder: Any) -> dict[str, Any]:
        """The options this was built from (the upstream needs its checkpoint to be rebuilt)."""
        return dict(self._export)
