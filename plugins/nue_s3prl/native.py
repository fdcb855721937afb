"""s3prl's own HuBERT / wav2vec 2.0 models (``hubert_local``, ``wav2vec2_local``, ...) driven padding-invariantly.

s3prl's experts pad a batch and run it whole. That leaks padding into every item in two ways:
the first conv layer's GroupNorm (``extractor_mode: default``) normalises over the whole padded
time axis, and HuBERT's frame padding mask is derived by reshaping the sample mask, so frames
whose receptive field reaches into the padding count as valid and are attended to. Here the
modules and weights are s3prl's, but the forward pass is driven with a masked group norm and
exact conv frame lengths (``floor((L - k) / s) + 1`` per layer), so an item's frames do not
depend on what it is batched with. Hidden states are the ones s3prl's hooks collect: the input
of every transformer layer, then the encoder output.

Shape legend: b = batch, s = audio samples, c = conv channels, t = frames, d = width.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nue_core.lengths import conv_output_lengths, conv_stack_lengths, length_mask
from nue_core.masked_norm import masked_group_norm, normalize_waveforms
from nue_core.protocols import EncoderOutput
from nue_s3prl.featurizer import Featurizer, Layer, state_index

SAMPLE_RATE = 16000
# The parts of s3prl's model a forward pass uses; pre-training heads (quantizer, final_proj,
# label embeddings, mask embedding) are left out so every kept parameter gets a gradient.
_KEPT = ("feature_extractor", "layer_norm", "post_extract_proj", "dropout_input", "encoder")


class NativeUpstream(nn.Module):
    """The used parts of an s3prl HubertModel / Wav2Vec2Model (parameter names as in s3prl)."""

    def __init__(self, model: nn.Module, num_layers: int) -> None:
        super().__init__()
        for name in _KEPT:
            setattr(self, name, getattr(model, name))
        encoder = self.encoder
        truncated = num_layers < len(encoder.layers)
        encoder.layers = encoder.layers[:num_layers]  # layers past the selected one never run
        if encoder.layer_norm_first and truncated:
            encoder.layer_norm = None  # the final norm belongs to the last layer only


class S3PRLNativeEncoder(nn.Module):
    """An s3prl HuBERT / wav2vec 2.0 upstream as an ``Encoder`` (see ``nue_core.protocols``).

    Args:
        upstream: the model's used parts, truncated after the selected layer.
        total_layers: transformer layers of the full model (for layer indices).
        layer: hidden state to output (index, 'last' or 'weighted').
        normalize_waveform: zero-mean/unit-variance per item over its valid samples (the
            checkpoint's ``task_cfg.normalize``; s3prl applies ``F.layer_norm`` per waveform).
        export: options ``export_options`` returns (architecture without weights).
    """

    def __init__(self, upstream: NativeUpstream, total_layers: int, layer: Layer,
                 normalize_waveform: bool, export: dict[str, Any]) -> None:
        super().__init__()
        self.upstream = upstream
        self.featurizer = Featurizer(len(upstream.encoder.layers) + 1, _run_layer(layer, total_layers))
        self.normalize_waveform = normalize_waveform
        self._export = export
        convs = [block[0] for block in upstream.feature_extractor.conv_layers]
        self.kernels = [int(c.kernel_size[0]) for c in convs]
        self.strides = [int(c.stride[0]) for c in convs]
        self.output_dim: int = int(upstream.encoder.embedding_dim)
        self.sample_rate: int = SAMPLE_RATE
        self.frame_rate_hz: float = SAMPLE_RATE / math.prod(self.strides)
        self.lora_targets: list[str] = ["q_proj", "v_proj"]
        self.freeze_groups: dict[str, list[str]] = {
            "upstream": ["upstream."],
            "feature_extractor": ["upstream.feature_extractor."],
            "transformer": ["upstream.encoder."],
        }

    def output_lengths(self, sample_lengths: torch.Tensor) -> torch.Tensor:
        """(b,) valid samples -> (b,) valid frames."""
        return conv_stack_lengths(sample_lengths, self.kernels, self.strides)

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> EncoderOutput:
        """Encode a padded batch.

        Args:
            waveforms: (b, s) float audio at 16 kHz; samples past ``lengths[i]`` are padding.
            lengths: (b,) valid samples per item.
        Returns:
            EncoderOutput: hidden (b, t, d) with padded frames zeroed, lengths (b,), all_layers
            (the (b, t, d) states that were run; padded frames not zeroed).
        """
        lengths = lengths.to(device=waveforms.device, dtype=torch.long)
        audio = waveforms.to(self.upstream.layer_norm.weight.dtype)
        if self.normalize_waveform:
            audio = normalize_waveforms(audio, lengths, eps=1e-5)  # eps of s3prl's F.layer_norm
        features, frame_lengths = self._conv_features(audio, lengths)  # (b, c, t)
        if bool((frame_lengths < 1).any()):
            raise ValueError(f"an utterance of {int(lengths.min())} samples is shorter than the "
                             "encoder's receptive field; drop or pad such clips before encoding")
        up = self.upstream
        x = up.layer_norm(features.transpose(1, 2))  # (b, t, c)
        if up.post_extract_proj is not None:
            x = up.post_extract_proj(x)  # (b, t, d)
        frame_mask = length_mask(frame_lengths, x.shape[1])  # (b, t)
        states = self._transformer(up.dropout_input(x), frame_mask)
        hidden = self.featurizer(states).masked_fill(~frame_mask[..., None], 0.0)
        return EncoderOutput(hidden=hidden, lengths=frame_lengths, all_layers=tuple(states))

    def _conv_features(self, audio: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """s3prl's ConvFeatureExtractionModel with the GroupNorm over valid frames only: (b, s) -> (b, c, t)."""
        hidden = audio[:, None, :]  # (b, 1, s)
        for block, kernel, stride in zip(self.upstream.feature_extractor.conv_layers, self.kernels, self.strides):
            lengths = conv_output_lengths(lengths, kernel, stride)
            if len(block) == 4 and isinstance(block[2], nn.GroupNorm):  # conv, dropout, norm, GELU
                hidden = block[3](masked_group_norm(block[1](block[0](hidden)), lengths, block[2]))
            else:
                hidden = block(hidden)  # per-frame LayerNorm or no norm: padding cannot leak
        return hidden, lengths

    def _transformer(self, x: torch.Tensor, frame_mask: torch.Tensor) -> list[torch.Tensor]:
        """s3prl's TransformerEncoder.extract_features with an exact key padding mask.

        Shapes: x (b, t, d), frame_mask (b, t) -> list of (b, t, d), one more than layers run.
        """
        encoder = self.upstream.encoder
        padding = ~frame_mask
        x = x.masked_fill(padding[..., None], 0.0)  # padded frames must not feed the pos conv
        if encoder.pos_conv is not None:
            x = x + encoder.pos_conv(x.transpose(1, 2)).transpose(1, 2)
        if not encoder.layer_norm_first:
            x = encoder.layer_norm(x)
        states = [F.dropout(x, p=encoder.dropout, training=self.training)]
        key_padding = padding if bool(padding.any()) else None
        hidden = states[0].transpose(0, 1)  # (t, b, d), s3prl's layer layout
        for layer in encoder.layers:
            hidden, _ = layer(hidden, self_attn_padding_mask=key_padding, need_weights=False)
            states.append(hidden.transpose(0, 1))
        if encoder.layer_norm_first and encoder.layer_norm is not None:
            states[-1] = encoder.layer_norm(states[-1])  # as s3prl's encoder output
        return states

    def export_options(self, folder: Any) -> dict[str, Any]:
        """Options that rebuild this architecture with random weights (the model folder holds the weights)."""
        return dict(self._export)


def _run_layer(layer: Layer, total_layers: int) -> Layer:
    """The layer as an index into the states that are run (an int layer is the last one run)."""
    return layer if state_index(layer, total_layers + 1) is None else -1


def layers_to_run(layer: Layer, total_layers: int) -> int:
    """Transformer layers to run for ``layer``: state i is the input of layer i."""
    index = state_index(layer, total_layers + 1)
    return total_layers if index is None else index
