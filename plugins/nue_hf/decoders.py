"""Decoder-only LMs from transformers: ``gpt-neox``, ``llama`` and any causal LM (``hf-causal-lm``).

One small wrapper (``HFCausalLMDecoder``) adapts a transformers ``*ForCausalLM`` to the ``Decoder``
protocol; the factories only decide where the architecture, the weights and the tokenizer come
from. The HF model is kept as ``self.model`` so peft can inject LoRA layers into it in place.
"""

from __future__ import annotations

import difflib
import inspect
from pathlib import Path
from typing import Any, Callable

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from nue_core.dtypes import DTYPES, DTypeName
from nue_core.errors import ConfigError
from nue_core.grad_checkpointing import enable_gradient_checkpointing
from nue_core.protocols import DecoderOutput, Tokenizer
from nue_core.registry import BuildContext
from nue_hf.metadata import HF_METADATA_KEYS
from nue_hf.tokenizers import load_tokenizer


# Why these, not peft's defaults (q/v only): the Nue-ASR paper and common speech-LLM recipes adapt
# the whole attention block, and GPT-NeoX's fused qkv plus its output projection are that block.
_LORA_TARGETS: dict[str, list[str]] = {
    "gpt_neox": ["query_key_value", "dense"],
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "mistral": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "qwen2": ["q_proj", "k_proj", "v_proj", "o_proj"],
}


class CausalLMOptions(BaseModel):
    """Options shared by every transformers causal-LM decoder."""

    model_config = ConfigDict(extra="forbid")

    checkpoint: str | None = Field(
        None, description="hub id or local folder of a transformers causal LM (weights + config)"
    )
    config: dict[str, Any] | None = Field(
        None, description="architecture fields (transformers config) for a randomly initialised model"
    )
    tokenizer: str | None = Field(
        None,
        description="'byte', a sentencepiece .model, a tokenizer folder or hub id; default: the checkpoint's",
    )
    dtype: DTypeName = Field("float32", description="dtype of the weights")
    gradient_checkpointing: bool = Field(False, description="recompute activations to save memory")

    @model_validator(mode="after")
    def _checkpoint_xor_config(self) -> "CausalLMOptions":
        if (self.checkpoint is None) == (self.config is None):
            raise ValueError("give exactly one of 'checkpoint' or 'config'")
        return self


class GPTNeoXOptions(CausalLMOptions):
    """Options of the ``gpt-neox`` decoder (``config`` needs no model_type)."""


class LlamaOptions(CausalLMOptions):
    """Options of the ``llama`` decoder (``config`` needs no model_type)."""


class HFCausalLMOptions(CausalLMOptions):
    """Options of the ``hf-causal-lm`` decoder: any ``AutoModelForCausalLM`` architecture."""

    @model_validator(mode="after")
    def _config_names_type(self) -> "HFCausalLMOptions":
        if self.config is not None and not self.config.get("model_type"):
            raise ValueError("'config' must include 'model_type' (e.g. qwen2, mistral, gpt2)")
        return self


def default_lora_targets(model_type: str) -> list[str]:
    """Module names LoRA adapts by default on ``model_type``: ours, else peft's, else ``[]``.

    An empty list means "unknown": the core then asks the user for ``lora.target_modules``
    (an attribute that raised would break ``isinstance(decoder, Decoder)`` checks instead).
    """
    if model_type in _LORA_TARGETS:
        return list(_LORA_TARGETS[model_type])
    from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as peft_defaults

    return list(peft_defaults.get(model_type, []))


class HFCausalLMDecoder(nn.Module):
    """A transformers causal LM behind the ``Decoder`` protocol.

    Shapes: b = batch, l = new tokens, c = tokens already in the cache, d = embed_dim, v = vocab_size.

    Args:
        model: a transformers ``*ForCausalLM`` (kept as ``self.model``).
        tokenizer: its tokenizer, or None when only described.
        dtype: the weights' dtype name, recorded for ``export_options``.
    """

    def __init__(self, model: nn.Module, tokenizer: Tokenizer | None, dtype: DTypeName = "float32") -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.dtype_name = dtype
        self.embed_dim: int = int(model.get_input_embeddings().weight.shape[1])
        self.vocab_size: int = int(model.get_output_embeddings().weight.shape[0])
        self.lora_targets: list[str] = default_lora_targets(str(model.config.model_type))
        self.freeze_groups = self._find_freeze_groups()
        # transformers 5.x renamed past_key_values -> cache (forward kwarg and output field); older
        # versions know only past_key_values. Ask the model once.
        params = inspect.signature(model.forward).parameters
        self._cache_kwarg = "cache" if "cache" in params else "past_key_values"
        self._keeps_logits = "logits_to_keep" in params  # else all logits are computed and sliced

    @property
    def model_type(self) -> str:
        return str(self.model.config.model_type)

    def _find_freeze_groups(self) -> dict[str, list[str]]:
        """Parameter-name prefixes (relative to this module) of embeddings, output head, layers."""
        names = {id(m): name for name, m in self.named_modules()}
        groups = {
            "embeddings": [names[id(self.model.get_input_embeddings())] + "."],
            "lm_head": [names[id(self.model.get_output_embeddings())] + "."],
        }
        n_layers = getattr(self.model.config, "num_hidden_layers", None)
        for name, module in self.named_modules():
            if isinstance(module, nn.ModuleList) and len(module) == n_layers:
                groups["layers"] = [name + "."]
                break
        params = [name for name, _ in self.named_parameters()]
        # A tied output head owns no parameter of its own: leave out groups that match nothing.
        return {k: v for k, v in groups.items() if all(any(p.startswith(x) for p in params) for x in v)}

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (b, l) int64 -> token embeddings (b, l, d)."""
        return self.model.get_input_embeddings()(ids)

    def forward(
        self,
        inputs_embeds: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        cache: Any = None,
        use_cache: bool | None = None,
        logits_to_keep: int = 0,
    ) -> DecoderOutput:
        """Next-token logits.

        Args:
            inputs_embeds: (b, l, d) prompt/target embeddings (left padding allowed).
            attention_mask: (b, c + l) 1 for real tokens, 0 for padding, cached tokens included.
            position_ids: (b, l) positions of the new tokens (count real tokens only).
            cache: the cache returned by the previous call, or None.
            use_cache: return an updated cache; None: in eval mode or when ``cache`` is given
                (generation), not in training (saves memory, works with gradient checkpointing).
            logits_to_keep: 0 for every position's logits, else only the last ``logits_to_keep``
                (a prompt's prefill needs one: its (b, l, vocabulary) logits are most of the
                output head's work and memory).

        Returns:
            DecoderOutput with logits (b, l, v) and the cache (None unless caching).
        """
        caching = cache is not None or (not self.training if use_cache is None else use_cache)
        keep = {"logits_to_keep": logits_to_keep} if logits_to_keep and self._keeps_logits else {}
        out = self.model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=caching,
            **{self._cache_kwarg: cache},
            **keep,
        )
        # The output names its cache as the forward does. Never ask a model that says `cache` for
        # `past_key_values`: as an attribute, a key or a `get` default, that name is a deprecated
        # alias which logs a warning (into `nue transcribe`'s progress bar).
        new_cache = out.get(self._cache_kwarg)
        logits = out.logits if keep or not logits_to_keep else out.logits[:, -logits_to_keep:]
        return DecoderOutput(logits=logits, cache=new_cache if caching else None)

    def reorder_cache(self, cache: Any, index: torch.Tensor) -> Any:
        """Cache rows picked by ``index`` (b',) of the cache's batch: beam expansion and reordering."""
        cache.reorder_cache(index.to(self.model.device))  # transformers Cache: in place, index_select per layer
        return cache

    def join_caches(self, caches: list[Any]) -> Any:
        """One cache holding the rows of ``caches`` in order (continuous batching).

        Each cache's positions are left-padded with zeros to the longest (the engine masks them 0,
        so they take no attention). Works in place on the first cache's layers: key/value tensors
        (b, heads, c, head_dim) per layer, as transformers' dynamic caches hold them.
        """
        layers = [_kv_layers(cache) for cache in caches]
        width = max(layer[0].keys.shape[-2] for layer in layers)
        for i, target in enumerate(layers[0]):
            parts = [layer[i] for layer in layers]
            target.keys = torch.cat([_left_pad_seq(p.keys, width) for p in parts], dim=0)
            target.values = torch.cat([_left_pad_seq(p.values, width) for p in parts], dim=0)
        return caches[0]

    def trim_cache(self, cache: Any, count: int) -> Any:
        """The cache without its first ``count`` positions (all masked for every row: dead padding)."""
        for layer in _kv_layers(cache):
            layer.keys = layer.keys[..., count:, :]
            layer.values = layer.values[..., count:, :]
        return cache

    def export_options(self, folder: Path) -> dict[str, Any]:
        """Save the tokenizer into ``folder``; return options that rebuild this architecture."""
        config = {k: v for k, v in self.model.config.to_diff_dict().items() if k not in HF_METADATA_KEYS}
        config["model_type"] = self.model_type
        options: dict[str, Any] = {"config": config, "dtype": self.dtype_name}
        if self.tokenizer is not None:
            options.update(self.tokenizer.save(Path(folder)))
        return options


def _kv_layers(cache: Any) -> list[Any]:
    """The layers of a transformers cache whose keys/values hold every position (b, h, c, d).

    Sliding-window, quantized, offloaded or recurrent layers keep something else: joining or
    trimming them by position would be wrong, so they are refused by name.
    """
    from transformers.cache_utils import DynamicLayer

    layers = getattr(cache, "layers", None)
    if layers is None:
        raise TypeError(f"cannot join or trim a {type(cache).__name__}: expected a transformers DynamicCache")
    for layer in layers:
        if type(layer) is not DynamicLayer or not layer.is_initialized:
            raise TypeError(f"cannot join or trim a cache layer of type {type(layer).__name__} "
                            "(continuous batching supports full-attention DynamicLayer caches only)")
    if getattr(cache, "offloading", False):
        raise TypeError("cannot join or trim an offloaded cache")
    return list(layers)


def _left_pad_seq(x: torch.Tensor, width: int) -> torch.Tensor:
    """x (b, h, c, d) left-padded with zeros along c to ``width``."""
    if x.shape[-2] == width:
        return x
    return torch.nn.functional.pad(x, (0, 0, width - x.shape[-2], 0))


# ---------------------------------------------------------------- building


def _describing() -> bool:
    """True under ``with torch.device("meta")``: the composer only describes the model."""
    return torch.empty(0).device.type == "meta"


def _source(checkpoint: str, ctx: BuildContext) -> str:
    """A local folder when one exists (relative to the saved model folder too), else the hub id."""
    path = ctx.resolve_path(checkpoint)
    return str(path) if path.exists() else checkpoint


def _resolve_tokenizer(options: CausalLMOptions, ctx: BuildContext) -> Tokenizer | None:
    """The tokenizer option, else the checkpoint's; None (describe mode only) when absent."""
    spec = options.tokenizer or options.checkpoint
    describing = not ctx.load_weights and _describing()
    if spec is None:
        if describing:
            return None
        raise ConfigError("decoder: with 'config', also give 'tokenizer' ('byte', a .model file or a folder)")
    try:
        # Describing never reaches the network: the tokenizer is optional there.
        return load_tokenizer(spec, ctx, local_files_only=describing)
    except ConfigError:
        if describing:
            return None
        raise


def _check_model_type(model_type: str, implied: str | None, where: str) -> None:
    if implied is not None and model_type != implied:
        raise ConfigError(
            f"{where}: model_type is '{model_type}' but this decoder builds '{implied}'; "
            "use decoder name 'hf-causal-lm' for other architectures"
        )


def _check_vocab(tokenizer: Tokenizer | None, model_vocab: int) -> None:
    if tokenizer is not None and tokenizer.vocab_size > model_vocab:
        raise ConfigError(
            f"decoder: the tokenizer has {tokenizer.vocab_size} tokens but the model's vocabulary is "
            f"{model_vocab}; use the checkpoint's own tokenizer or a larger vocab_size"
        )


def _check_stray_keys(config: Any, given: dict[str, Any], model_type: str) -> None:
    """HF configs keep unknown keys as attributes; treat those as typos (known legacy keys are consumed)."""
    allowed = set(inspect.signature(type(config).__init__).parameters) | set(type(config).attribute_map)
    stray = [k for k in given if k not in allowed and not k.startswith("_") and k in vars(config)]
    if stray:
        close = {k: difflib.get_close_matches(k, allowed, 1) for k in stray}
        hints = [f"{k!r}" + (f" (did you mean {m[0]!r}?)" if m else "") for k, m in close.items()]
        raise ConfigError(f"decoder.config: unknown {model_type} config key(s): {', '.join(hints)}")


def _config_from_dict(
    values: dict[str, Any], implied: str | None, tokenizer: Tokenizer | None, strict: bool, where: str
) -> Any:
    """A transformers config from a dict; token ids and vocab size default to the tokenizer's."""
    from transformers import AutoConfig

    values = {k: v for k, v in values.items() if k not in HF_METADATA_KEYS}
    model_type = values.pop("model_type", None) or implied
    if model_type is None:
        raise ConfigError(f"{where}: the config needs a 'model_type'")
    _check_model_type(model_type, implied, where)
    if tokenizer is not None:
        defaults = {"vocab_size": tokenizer.vocab_size, "bos_token_id": tokenizer.bos_id,
                    "eos_token_id": tokenizer.eos_id, "pad_token_id": tokenizer.pad_id}
        values = {**defaults, **values}
        _check_vocab(tokenizer, int(values["vocab_size"]))  # before building a model that cannot work
    try:
        config = AutoConfig.for_model(model_type, **values)
    except (ValueError, TypeError, KeyError) as exc:
        raise ConfigError(f"{where}: invalid {model_type} config: {exc}") from None
    if strict:
        _check_stray_keys(config, values, model_type)
    return config


def _checkpoint_config(checkpoint: str, ctx: BuildContext, implied: str | None) -> Any:
    """Architecture of a checkpoint without its weights: local config.json, known architectures, hub."""
    from transformers import AutoConfig

    source = _source(checkpoint, ctx)
    if not Path(source).is_dir() and checkpoint in ctx.architectures:
        where = f"architecture of '{checkpoint}'"
        return _config_from_dict(ctx.architectures[checkpoint], implied, None, False, where)
    try:
        config = AutoConfig.from_pretrained(source, trust_remote_code=False)
    except Exception as exc:  # OSError, ValueError, hub errors: all mean "cannot describe it"
        raise ConfigError(
            f"decoder checkpoint '{checkpoint}': cannot read its config ({type(exc).__name__}: {exc}); "
            "give a local folder, a known checkpoint id, or 'config' instead"
        ) from exc
    _check_model_type(config.model_type, implied, f"decoder checkpoint '{checkpoint}'")
    return config


def _build_model(
    options: CausalLMOptions, ctx: BuildContext, implied: str | None, tokenizer: Tokenizer | None
) -> nn.Module:
    """Pretrained weights when asked and available, else a random init of the architecture."""
    from transformers import AutoModelForCausalLM

    dtype = DTYPES[options.dtype]
    if options.checkpoint is not None:
        config = _checkpoint_config(options.checkpoint, ctx, implied)
        if ctx.load_weights:
            source = _source(options.checkpoint, ctx)
            return AutoModelForCausalLM.from_pretrained(
                source, config=config, dtype=dtype, trust_remote_code=False
            )
    else:
        assert options.config is not None  # the options validator guarantees one of the two
        config = _config_from_dict(options.config, implied, tokenizer, True, "decoder.config")
    return AutoModelForCausalLM.from_config(config, dtype=dtype)


def build_decoder(
    options: CausalLMOptions, ctx: BuildContext, implied: str | None = None
) -> HFCausalLMDecoder:
    """Build a decoder; ``implied`` is the model_type a named decoder stands for (None: any)."""
    tokenizer = _resolve_tokenizer(options, ctx)
    model = _build_model(options, ctx, implied, tokenizer)
    decoder = HFCausalLMDecoder(model, tokenizer, options.dtype)
    _check_vocab(tokenizer, decoder.vocab_size)
    if options.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    return decoder


def _factory(implied: str | None, doc: str) -> Callable[[CausalLMOptions, BuildContext], HFCausalLMDecoder]:
    def factory(options: CausalLMOptions, ctx: BuildContext) -> HFCausalLMDecoder:
        return build_decoder(options, ctx, implied)

    factory.__doc__ = doc
    return factory


def register_decoders(register: Callable[..., None]) -> None:
    """Register ``gpt-neox``, ``llama`` and ``hf-causal-lm`` with the host's ``register`` callback."""
    register("gpt-neox", _factory("gpt_neox", "GPT-NeoX causal LM (rinna/japanese-gpt-neox-3.6b, Nue-ASR)"),
             options=GPTNeoXOptions, aliases=("gptneox", "gpt_neox", "neox"))
    register("llama", _factory("llama", "Llama-architecture causal LM"),
             options=LlamaOptions, aliases=("llama2", "llama3"))
    register("hf-causal-lm", _factory(None, "any transformers AutoModelForCausalLM (config: model_type)"),
             options=HFCausalLMOptions, aliases=("hf", "causal-lm"))
