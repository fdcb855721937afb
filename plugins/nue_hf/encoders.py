"""Speech encoders from transformers: ``hubert`` (HubertModel) and ``wav2vec2`` (Wav2Vec2Model).

The transformers model is wrapped, not copied: its modules and weights are used as they are (so a
checkpoint's state dict loads under the ``model.`` prefix), while the forward pass is driven here
so that padding a batch cannot change any item's output (masked first-layer GroupNorm, frame
attention mask) and every layer's hidden state is available for layer selection.

Shape legend: b = batch, s = audio samples, t = frames, d = hidden size.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn
from transformers import (
    AutoConfig,
    HubertConfig,
    HubertModel,
    PretrainedConfig,
    PreTrainedModel,
    Wav2Vec2Config,
    Wav2Vec2Model,
)
from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled
from transformers.integrations.fsdp import is_fsdp_managed_module
from transformers.masking_utils import create_bidirectional_mask

from nue_core.errors import CheckpointError, ConfigError
from nue_core.grad_checkpointing import enable_gradient_checkpointing
from nue_core.lengths import length_mask
from nue_core.masked_norm import normalize_waveforms
from nue_core.protocols import EncoderOutput
from nue_core.registry import BuildContext
from nue_hf.masked_feature_extractor import run_feature_extractor
from nue_hf.metadata import HF_METADATA_KEYS

SAMPLE_RATE = 16000
ARCHITECTURES: dict[str, tuple[type[PretrainedConfig], type[PreTrainedModel]]] = {
    "hubert": (HubertConfig, HubertModel),
    "wav2vec2": (Wav2Vec2Config, Wav2Vec2Model),
}
# Config fields transformers reads with getattr() although the config class does not declare them.
_UNDECLARED_FIELDS = {"adapter_attn_dim"}


class HFEncoderOptions(BaseModel):
    """Options of the ``hubert`` and ``wav2vec2`` encoders."""

    model_config = ConfigDict(extra="forbid")

    checkpoint: str | None = Field(
        None, description="hub id or local folder of a pretrained model (e.g. rinna/japanese-hubert-base)"
    )
    config: dict[str, Any] | None = Field(
        None,
        description="HubertConfig / Wav2Vec2Config fields for a randomly initialised model (instead of checkpoint)",
    )
    layer: int | Literal["last", "weighted"] = Field(
        "last",
        description="hidden states to output: an index into all layers (0 = transformer input, "
        "negative from the end; later layers are not run and are frozen), 'last', or 'weighted' "
        "(learnable softmax-weighted sum of all layers)",
    )
    normalize_waveform: bool = Field(
        False,
        description="zero-mean/unit-variance per utterance over its valid samples (wav2vec2-large "
        "style checkpoints expect it; the released Nue-ASR used raw audio)",
    )
    gradient_checkpointing: bool = Field(False, description="recompute activations in backward to save memory")
    mask_time_prob: float | None = Field(
        None, ge=0.0, le=1.0, description="override the config's SpecAugment time-mask probability (training only)"
    )
    layerdrop: float | None = Field(
        None,
        ge=0.0,
        lt=1.0,
        description="override the config's LayerDrop probability (training only); 0 for DDP without "
        "find_unused_parameters",
    )

    @model_validator(mode="after")
    def _one_source(self) -> "HFEncoderOptions":
        if (self.checkpoint is None) == (self.config is None):
            raise ValueError(
                "give exactly one of 'checkpoint' (pretrained hub id or folder) or 'config' "
                "(architecture fields for a random init)"
            )
        return self


def _config_from_fields(kind: str, fields: dict[str, Any], source: str, strict: bool) -> PretrainedConfig:
    """A config object of ``kind`` from a dict; ``strict`` refuses fields the config class lacks."""
    config_cls = ARCHITECTURES[kind][0]
    fields = dict(fields)
    model_type = fields.pop("model_type", config_cls.model_type)
    if model_type != config_cls.model_type:
        hint = next((k for k, (c, _) in ARCHITECTURES.items() if c.model_type == model_type), None)
        use = f"; use encoder name '{hint}'" if hint else ""
        raise ConfigError(f"{source} describes a '{model_type}' model, not {kind}{use}")
    if strict:
        allowed = set(config_cls().to_dict()) | _UNDECLARED_FIELDS
        unknown = sorted(set(fields) - allowed)
        if unknown:
            raise ConfigError(
                f"{source}: unknown {config_cls.__name__} field(s) {', '.join(unknown)}; "
                f"allowed: {', '.join(sorted(allowed - HF_METADATA_KEYS))}"
            )
    return config_cls(**{k: v for k, v in fields.items() if k not in HF_METADATA_KEYS})


def resolve_config(kind: str, options: HFEncoderOptions, ctx: BuildContext) -> PretrainedConfig:
    """The architecture to build: ``config:``, a local folder's config.json, a known architecture, or the hub."""
    if options.config is not None:
        return _config_from_fields(kind, options.config, f"{kind} encoder option 'config'", strict=True)
    checkpoint = str(options.checkpoint)
    folder = ctx.resolve_path(checkpoint)
    if folder.is_dir():
        config_file = folder / "config.json"
        if not config_file.is_file():
            raise ConfigError(f"{kind} checkpoint folder {folder} has no config.json")
        fields = json.loads(config_file.read_text(encoding="utf-8"))
        return _config_from_fields(kind, fields, str(config_file), strict=False)
    if not ctx.load_weights and checkpoint in ctx.architectures:
        return _config_from_fields(kind, ctx.architectures[checkpoint], f"architecture of '{checkpoint}'", strict=False)
    try:
        config = AutoConfig.from_pretrained(checkpoint)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"cannot read the config of {kind} checkpoint '{checkpoint}' ({exc}); give a local folder, "
            "or pass `config:` with its architecture fields to build it without the hub"
        ) from None
    return _config_from_fields(kind, config.to_dict(), f"config of '{checkpoint}'", strict=False)


def build_model(kind: str, options: HFEncoderOptions, ctx: BuildContext) -> PreTrainedModel:
    """The transformers model: pretrained weights when asked for, else a random init of the config."""
    config = resolve_config(kind, options, ctx)
    if config.feat_extract_norm not in ("group", "layer"):
        raise ConfigError(f"{kind}: feat_extract_norm must be 'group' or 'layer', got {config.feat_extract_norm!r}")
    if getattr(config, "add_adapter", False):
        raise ConfigError(f"{kind}: add_adapter=True (a downsampling adapter after the transformer) is not supported")
    if options.mask_time_prob is not None:
        config.mask_time_prob = options.mask_time_prob
    if options.layerdrop is not None:
        config.layerdrop = options.layerdrop
    model_cls = ARCHITECTURES[kind][1]
    if ctx.load_weights and options.checkpoint is not None:
        folder = ctx.resolve_path(options.checkpoint)
        source = str(folder) if folder.is_dir() else options.checkpoint
        try:
            model = model_cls.from_pretrained(source, config=config, dtype=torch.get_default_dtype())
        except OSError as exc:
            raise CheckpointError(f"cannot load {kind} weights from '{source}': {exc}") from None
    else:
        model = model_cls(config)
    if torch.get_default_device().type == "meta":
        # masked_spec_embed is made with the legacy torch.Tensor(n), which ignores the device context.
        model = model.to("meta")
    if options.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    return model


class HFSpeechEncoder(nn.Module):
    """A transformers HubertModel / Wav2Vec2Model as an ``Encoder`` (see ``nue_core.protocols``).

    Args:
        model: the transformers model (weights already in place).
        layer: which hidden states to output (see ``HFEncoderOptions.layer``).
        normalize_waveform: normalise each utterance over its valid samples first.

    Attributes:
        output_dim, frame_rate_hz, sample_rate, freeze_groups: as the ``Encoder`` protocol.
        lora_targets: attention projections LoRA adapts by default.
        layer_weights: (layers + 1,) logits of the weighted layer sum, or None.
        min_samples: shortest input that gives one frame (the conv receptive field).
    """

    def __init__(self, model: PreTrainedModel, layer: int | str = "last", normalize_waveform: bool = False) -> None:
        super().__init__()
        config = model.config
        self.model = model
        self.normalize_waveform = normalize_waveform
        self.lora_targets: list[str] = ["q_proj", "v_proj"]
        self.output_dim: int = config.hidden_size
        self.sample_rate: int = SAMPLE_RATE
        self.frame_rate_hz: float = SAMPLE_RATE / math.prod(config.conv_stride)
        self.num_layers: int = config.num_hidden_layers
        self.layer = layer
        self.run_layers = self._check_layer(layer)
        self.min_samples = self._receptive_field(config.conv_kernel, config.conv_stride)
        self.layer_weights = nn.Parameter(torch.zeros(self.num_layers + 1)) if layer == "weighted" else None
        self.freeze_groups: dict[str, list[str]] = {
            "feature_extractor": ["model.feature_extractor."],
            "feature_projection": ["model.feature_projection."],
            "transformer": ["model.encoder."] + (["model.masked_spec_embed"] if hasattr(model, "masked_spec_embed") else []),
        }
        self._freeze_unused_layers()

    def _check_layer(self, layer: int | str) -> int:
        """Number of transformer layers to run; an int layer is checked against the model's depth."""
        if isinstance(layer, str):
            return self.num_layers
        if not -(self.num_layers + 1) <= layer <= self.num_layers:
            raise ConfigError(
                f"layer {layer} is out of range for a {self.num_layers}-layer encoder: use 0..{self.num_layers} "
                f"(0 = transformer input), -1..-{self.num_layers + 1} from the end, 'last' or 'weighted'"
            )
        return layer % (self.num_layers + 1)

    @staticmethod
    def _receptive_field(kernels: list[int], strides: list[int]) -> int:
        """Fewest samples that give one frame."""
        samples = 1
        for kernel, stride in zip(reversed(kernels), reversed(strides)):
            samples = (samples - 1) * stride + kernel
        return samples

    def _freeze_unused_layers(self) -> None:
        # Layers past the selected one never run: freezing them keeps DDP and optimisers from
        # waiting on gradients that cannot come.
        encoder = self.model.encoder
        unused = list(encoder.layers[self.run_layers :])
        if self.model.config.do_stable_layer_norm and self.run_layers < self.num_layers:
            unused.append(encoder.layer_norm)
        for module in unused:
            module.requires_grad_(False)

    def output_lengths(self, sample_lengths: torch.Tensor) -> torch.Tensor:
        """(b,) valid samples -> (b,) valid frames."""
        return self.model._get_feat_extract_output_lengths(sample_lengths).clamp(min=0).long()

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> EncoderOutput:
        """Encode a padded batch.

        Args:
            waveforms: (b, s) float audio at ``sample_rate``; samples past ``lengths[i]`` are padding.
            lengths: (b,) valid samples per item.
        Returns:
            EncoderOutput with hidden (b, t, d) (padded frames zeroed), lengths (b,) and all_layers:
            the (b, t, d) states of every layer run (first = transformer input); their padded frames
            are not zeroed.
        """
        lengths = lengths.to(device=waveforms.device, dtype=torch.long)
        audio = waveforms.to(self.model.feature_extractor.conv_layers[0].conv.weight.dtype)
        if self.normalize_waveform:
            audio = normalize_waveforms(audio, lengths)
        config = self.model.config
        features, frame_lengths = run_feature_extractor(
            self.model.feature_extractor, audio, lengths, config.conv_kernel, config.conv_stride
        )  # (b, c, t)
        self._check_frames(frame_lengths, lengths)
        frame_mask = length_mask(frame_lengths, features.shape[-1])  # (b, t)
        projected = self.model.feature_projection(features.transpose(1, 2))
        # wav2vec2's projection also returns the normalised conv features
        hidden = projected[0] if isinstance(projected, tuple) else projected  # (b, t, d)
        hidden = self.model._mask_hidden_states(hidden, attention_mask=frame_mask)  # SpecAugment when training
        states = self._run_transformer(hidden, frame_mask)
        output = self._select(states).masked_fill(~frame_mask[..., None], 0.0)
        return EncoderOutput(hidden=output, lengths=frame_lengths, all_layers=tuple(states))

    def _check_frames(self, frame_lengths: torch.Tensor, lengths: torch.Tensor) -> None:
        if bool((frame_lengths < 1).any()):
            shortest = int(lengths.min())
            raise ValueError(
                f"an utterance of {shortest} samples is shorter than the encoder's receptive field "
                f"({self.min_samples} samples); drop or pad such clips before encoding"
            )

    def _run_transformer(self, hidden: torch.Tensor, frame_mask: torch.Tensor) -> list[torch.Tensor]:
        """The transformers encoder's forward, keeping every layer's state (a skipped layer repeats).

        Shapes: hidden (b, t, d), frame_mask (b, t) -> list of (b, t, d), one more than layers run.
        """
        encoder, stable = self.model.encoder, self.model.config.do_stable_layer_norm
        hidden = hidden.masked_fill(~frame_mask[..., None], 0.0)  # padded frames must not feed the pos conv
        attention_mask = create_bidirectional_mask(
            config=self.model.config, inputs_embeds=hidden, attention_mask=frame_mask
        )
        hidden = hidden + encoder.pos_conv_embed(hidden)
        if not stable:
            hidden = encoder.layer_norm(hidden)
        states = [encoder.dropout(hidden)]
        for layer in encoder.layers[: self.run_layers]:
            skip = self._skip_layer()
            states.append(states[-1] if skip else layer(states[-1], attention_mask=attention_mask))
        if stable and self.run_layers == self.num_layers:
            # the final norm belongs to the last state (as transformers' last_hidden_state)
            states[-1] = encoder.layer_norm(states[-1])
        return states

    def _skip_layer(self) -> bool:
        """LayerDrop, as transformers does it: never at eval, never where all ranks must run in sync."""
        layerdrop = self.model.config.layerdrop
        if not self.training or layerdrop <= 0.0:
            return False
        if is_deepspeed_zero3_enabled() or is_fsdp_managed_module(self.model.encoder):
            return False
        return bool(torch.rand([]) < layerdrop)

    def _select(self, states: list[torch.Tensor]) -> torch.Tensor:
        """The configured layer, the last one, or the softmax-weighted sum of all (b, t, d)."""
        if self.layer_weights is not None:
            weights = torch.softmax(self.layer_weights, dim=0).to(states[0].dtype)
            return torch.einsum("l,lbtd->btd", weights, torch.stack(states))
        return states[-1]  # an int layer stops the transformer there, so it is the last state too

    def export_options(self, folder: Path) -> dict[str, Any]:
        """Options that rebuild this architecture from its config alone (weights come from the model folder)."""
        config = self.model.config
        allowed = set(type(config)().to_dict()) | _UNDECLARED_FIELDS
        fields = json.loads(config.to_json_string(use_diff=True))
        fields = {k: v for k, v in fields.items() if k in allowed and k not in HF_METADATA_KEYS}
        fields["model_type"] = config.model_type
        return {
            "config": fields,
            "layer": self.layer,
            "normalize_waveform": self.normalize_waveform,
            "gradient_checkpointing": any(getattr(m, "gradient_checkpointing", False) for m in self.model.modules()),
        }


def _factory(kind: str) -> Callable[[BaseModel, BuildContext], HFSpeechEncoder]:
    def build(options: BaseModel, ctx: BuildContext) -> HFSpeechEncoder:
        assert isinstance(options, HFEncoderOptions)
        model = build_model(kind, options, ctx)
        return HFSpeechEncoder(model, layer=options.layer, normalize_waveform=options.normalize_waveform)

    build.__name__ = f"build_{kind}_encoder"
    return build


def register_encoders(register: Callable[..., None]) -> None:
    """Register ``hubert`` and ``wav2vec2`` with the host's ``register`` callback."""
    register(
        "hubert",
        _factory("hubert"),
        options=HFEncoderOptions,
        aliases=("hf-hubert",),
        description="transformers HubertModel (e.g. rinna/japanese-hubert-base); padding-invariant batching",
    )
    register(
        "wav2vec2",
        _factory("wav2vec2"),
        options=HFEncoderOptions,
        aliases=("w2v2", "hf-wav2vec2"),
        description="transformers Wav2Vec2Model (base, large, XLS-R, CTC fine-tuned); padding-invariant batching",
    )
