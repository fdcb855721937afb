"""The ``s3prl`` encoders: options, factories and registration.

Three names are registered, because a component name (not an alias) is what selects a default:

* ``s3prl``: any upstream s3prl's hub lists (``upstream`` is required).
* ``s3prl:hubert``: ``upstream`` defaults to ``hubert_local`` (a converted s3prl HuBERT .pt).
* ``s3prl:wav2vec2``: ``upstream`` defaults to ``wav2vec2_local``.

The HuBERT and wav2vec 2.0 families given by a checkpoint path or URL (``hubert_local``,
``hubert_url``, ``hubert_custom`` and the ``wav2vec2_`` ones) are built natively (see
``nue_s3prl.native``: safe loading, no dummy forward, padding-invariant batches); every other
upstream goes through s3prl's hub (see ``nue_s3prl.generic``).

Trainability is the shared ``trainable`` / ``freeze`` fields of the part, applied by the composer
like for every encoder: ``trainable: false`` freezes all, ``freeze: [upstream]`` freezes the
upstream and keeps the layer weights trainable (s3prl's usual frozen-upstream setup).
"""

from __future__ import annotations

import difflib
from typing import Any, Callable, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from nue_core.errors import CheckpointError, ConfigError
from nue_core.registry import BuildContext
from nue_s3prl.compat import (
    hub_unavailable_reason,
    import_s3prl,
    require_hub,
    require_s3prl,
    s3prl_missing_reason,
    weights_only_loads,
)
from nue_s3prl.featurizer import state_index

NATIVE_FAMILY = {f"{family}_{kind}": family for family in ("hubert", "wav2vec2") for kind in ("local", "url", "custom")}
# Keys of a converted HuBERT checkpoint that only pre-training uses (label embeddings).
_PRETRAINING_ONLY = ("label_embs_concat",)


class S3PRLOptions(BaseModel):
    """Options of the ``s3prl`` encoder."""

    model_config = ConfigDict(extra="forbid")

    upstream: str = Field(description="s3prl upstream name, e.g. hubert_local, wav2vec2_local, hf_hubert_custom, wavlm")
    checkpoint: str | None = Field(None, description="checkpoint path or URL handed to the upstream (its `ckpt`)")
    config: dict[str, Any] | None = Field(
        None, description="s3prl model config fields for a randomly initialised hubert_*/wav2vec2_* upstream "
        "(instead of checkpoint)",
    )
    layer: int | Literal["last", "weighted"] = Field(
        "weighted", description="hidden state to output: an index (0 = transformer input, negative from the end), "
        "'last', or 'weighted' (learnable softmax-weighted sum of all, as s3prl's Featurizer)",
    )
    normalize_waveform: bool | None = Field(
        None, description="zero-mean/unit-variance per utterance (hubert_*/wav2vec2_*); default: the "
        "checkpoint's task_cfg.normalize",
    )
    upstream_options: dict[str, Any] = Field(
        default_factory=dict, description="extra keyword arguments of the hub function (other upstreams only)"
    )

    @model_validator(mode="after")
    def _sources(self) -> "S3PRLOptions":
        if self.upstream in NATIVE_FAMILY:
            if (self.checkpoint is None) == (self.config is None):
                raise ValueError(f"upstream {self.upstream} needs exactly one of 'checkpoint' (path or URL of a "
                                 "converted s3prl .pt) or 'config' (model fields for a random init)")
            if self.upstream_options:
                raise ValueError(f"upstream {self.upstream} is built natively and takes no upstream_options")
        elif self.config is not None or self.normalize_waveform is not None:
            raise ValueError(f"'config' and 'normalize_waveform' apply to hubert_*/wav2vec2_* upstreams, not {self.upstream}")
        return self


class S3PRLHubertOptions(S3PRLOptions):
    """Options of ``s3prl:hubert`` (``s3prl`` with ``upstream: hubert_local``)."""

    upstream: str = Field("hubert_local", description="s3prl upstream name (default hubert_local)")


class S3PRLWav2Vec2Options(S3PRLOptions):
    """Options of ``s3prl:wav2vec2`` (``s3prl`` with ``upstream: wav2vec2_local``)."""

    upstream: str = Field("wav2vec2_local", description="s3prl upstream name (default wav2vec2_local)")


def build_native(options: S3PRLOptions, ctx: BuildContext) -> torch.nn.Module:
    """A hubert_*/wav2vec2_* upstream from a converted checkpoint or a config, with no dummy forward."""
    from nue_s3prl.checkpoints import build_model, config_fields, load_checkpoint, resolve_checkpoint
    from nue_s3prl.native import NativeUpstream, S3PRLNativeEncoder, layers_to_run

    family = NATIVE_FAMILY[options.upstream]
    state: dict[str, Any] = {"model_cfg": options.config, "task_cfg": {}}
    if options.checkpoint is not None:
        path = resolve_checkpoint(options.checkpoint, ctx)
        state = load_checkpoint(path, weights=ctx.load_weights)
    model, cfg, task = build_model(family, state["model_cfg"], state["task_cfg"], strict=options.config is not None)
    if ctx.load_weights and options.checkpoint is not None:
        _load_weights(model, state["model_weight"], options.checkpoint)
    normalize = bool(task.normalize) if options.normalize_waveform is None else options.normalize_waveform
    state_index(options.layer, cfg.encoder_layers + 1)  # range check, with the allowed range
    upstream = NativeUpstream(model, layers_to_run(options.layer, cfg.encoder_layers))
    export = {"upstream": options.upstream, "config": config_fields(cfg), "layer": options.layer,
              "normalize_waveform": normalize}
    return S3PRLNativeEncoder(upstream, cfg.encoder_layers, options.layer, normalize, export)


def _load_weights(model: torch.nn.Module, weights: dict[str, torch.Tensor], source: str) -> None:
    result = model.load_state_dict(weights, strict=False)
    unexpected = [k for k in result.unexpected_keys if not k.startswith(_PRETRAINING_ONLY)]
    if result.missing_keys or unexpected:
        raise CheckpointError(f"s3prl checkpoint '{source}' does not fit its own model_cfg: missing "
                              f"{result.missing_keys[:5]}, unexpected {unexpected[:5]}")


def build_hub(options: S3PRLOptions, ctx: BuildContext) -> torch.nn.Module:
    """Any other upstream through s3prl's hub; pickled code in its checkpoint is refused."""
    from nue_s3prl.generic import S3PRLHubEncoder

    require_hub(options.upstream)
    hub = import_s3prl("s3prl.hub")
    names = hub.options()
    if options.upstream not in names:
        close = difflib.get_close_matches(options.upstream, names, n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise ConfigError(f"s3prl has no upstream '{options.upstream}'{hint} (s3prl.hub.options() lists them)")
    kwargs = dict(options.upstream_options)
    if options.checkpoint is not None:
        kwargs["ckpt"] = str(ctx.resolve_path(options.checkpoint)) if "://" not in options.checkpoint else options.checkpoint
    # the hub function reads its weights now; describing on the meta device cannot skip that
    with weights_only_loads(), torch.device("cpu"):
        upstream = getattr(hub, options.upstream)(**kwargs)
    export = options.model_dump(exclude_none=True)
    return S3PRLHubEncoder(upstream, options.layer, export)


def build_s3prl_encoder(options: BaseModel, ctx: BuildContext) -> torch.nn.Module:
    """Build an s3prl upstream encoder (any name s3prl's hub lists)."""
    assert isinstance(options, S3PRLOptions)
    require_s3prl()
    if options.upstream in NATIVE_FAMILY:
        return build_native(options, ctx)
    return build_hub(options, ctx)


def register_encoders(register: Callable[..., None]) -> None:
    """Register ``s3prl``, ``s3prl:hubert`` and ``s3prl:wav2vec2``, marked unavailable without s3prl.

    The descriptions are the same in every environment (the config reference is generated from
    them); what is missing here goes to ``unavailable``, which ``nue plugins`` shows.
    """
    missing = s3prl_missing_reason(import_it=False)
    # without a loadable torchaudio the native hubert_*/wav2vec2_* upstreams still work; only the hub does not
    hub = None if missing else hub_unavailable_reason()
    entries = (
        ("s3prl", S3PRLOptions, ("s3prl-upstream",), "any s3prl upstream (hub name in `upstream`)"),
        ("s3prl:hubert", S3PRLHubertOptions, ("s3prl-hubert",), "s3prl HuBERT (hubert_local: converted .pt checkpoint)"),
        ("s3prl:wav2vec2", S3PRLWav2Vec2Options, ("s3prl-wav2vec2", "s3prl:w2v2"),
         "s3prl wav2vec 2.0 (wav2vec2_local: converted .pt checkpoint)"),
    )
    for name, options, aliases, text in entries:
        unavailable = missing or ""
        if hub and name == "s3prl":  # short: the torchaudio line of `nue plugins` says what is wrong
            unavailable = ("its hub upstreams (all but hubert_*/wav2vec2_*) need torchaudio, "
                           "which cannot be imported here")
        # SSL upstreams are frozen by default, as s3prl's recipes do; the layer weights still train.
        register(name, build_s3prl_encoder, options=options, aliases=aliases,
                 description=f"{text}; padding-invariant batching", shared_defaults={"freeze": ["upstream"]},
                 unavailable=unavailable)
