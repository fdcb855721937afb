"""Freezing and LoRA, applied in one place after the parts are built.

Per part: ``trainable: false`` freezes everything; ``freeze: [...]`` freezes named groups (a part's
``freeze_groups``) or raw parameter-name prefixes; ``lora`` injects a peft LoRA adapter and then
only the adapter trains in that part (plus any parameter the part marks as new, see
``new_parameter_prefixes``).
"""

from __future__ import annotations

from torch import nn

from nue_core.config import KINDS, ComponentSpec, ModelConfig
from nue_core.errors import ConfigError

LORA_ADAPTER = "default"


def apply_trainability(model: nn.Module, config: ModelConfig) -> None:
    """Set ``requires_grad`` on every parameter of ``model`` (a SpeechLM) from ``config``."""
    for part in KINDS:
        spec: ComponentSpec = getattr(config, part)
        module: nn.Module = getattr(model, part)
        if spec.uses_lora():
            inject_lora(module, spec, part)
        for name, param in module.named_parameters():
            is_adapter = "lora_" in name
            param.requires_grad = is_adapter if spec.uses_lora() else spec.trainable
        for prefix in resolve_freeze(module, spec.freeze, part):
            for name, param in module.named_parameters():
                if name.startswith(prefix):
                    param.requires_grad = False


def resolve_freeze(module: nn.Module, entries: list[str], part: str) -> list[str]:
    """Expand group names into parameter-name prefixes; every entry must match something."""
    groups: dict[str, list[str]] = getattr(module, "freeze_groups", {}) or {}
    names = [n for n, _ in module.named_parameters()]
    prefixes: list[str] = []
    for entry in entries:
        found = groups.get(entry, [entry])
        if not any(n.startswith(p) for p in found for n in names):
            allowed = ", ".join(sorted(groups)) or "none"
            raise ConfigError(
                f"{part}.freeze: '{entry}' is neither a group nor a parameter prefix of "
                f"{type(module).__name__}; groups: {allowed}"
            )
        prefixes.extend(found)
    return prefixes


def has_lora(module: nn.Module) -> bool:
    """True when ``module`` already carries LoRA layers."""
    return any("lora_" in name for name, _ in module.named_parameters())


def inject_lora(module: nn.Module, spec: ComponentSpec, part: str) -> None:
    """Add a LoRA adapter to ``module`` in place (module names and forward stay the same).

    A module that already has an adapter (e.g. re-applying a config) is left as it is.
    """
    from peft import LoraConfig, inject_adapter_in_model

    assert spec.lora is not None
    if has_lora(module):
        return
    targets = spec.lora.target_modules or list(getattr(module, "lora_targets", []) or [])
    if not targets:
        raise ConfigError(
            f"{part}.lora: {type(module).__name__} has no default LoRA targets; "
            "set lora.target_modules"
        )
    lora = LoraConfig(
        r=spec.lora.r, lora_alpha=spec.lora.alpha, lora_dropout=spec.lora.dropout, target_modules=targets
    )
    try:
        inject_adapter_in_model(lora, module, adapter_name=LORA_ADAPTER)
    except ValueError as exc:
        raise ConfigError(f"{part}.lora: {exc}") from None


def merge_lora(module: nn.Module) -> int:
    """Fold every LoRA adapter of ``module`` into its base weights and remove it.

    Returns:
        The number of adapted layers merged.
    """
    from peft.tuners.lora import LoraLayer

    merged = 0
    for name, layer in list(module.named_modules()):
        if isinstance(layer, LoraLayer):
            layer.merge()
            parent_name, _, child = name.rpartition(".")
            parent = module.get_submodule(parent_name) if parent_name else module
            setattr(parent, child, layer.get_base_layer())
            merged += 1
    return merged


def reconfigure(model: nn.Module, config: ModelConfig) -> nn.Module:
    """Apply a new config's trainability and LoRA to a built model (e.g. adapt a loaded checkpoint).

    Only shared part fields (trainable, freeze, lora) and top-level fields such as ``ctc_weight``
    may differ: the parts themselves are not rebuilt.
    """
    for part in KINDS:
        old, new = getattr(model.config, part), getattr(config, part)
        if old.name != new.name or old.options != new.options:
            raise ConfigError(f"{part}: reconfigure changes only trainable/freeze/lora; rebuild the model to change '{part}'")
    model.config = config
    apply_trainability(model, config)
    return model


def merge_adapters(model: nn.Module) -> nn.Module:
    """Fold every part's LoRA adapter into its weights and drop ``lora`` from the config (in place)."""
    updates = {}
    for part in KINDS:
        if merge_lora(getattr(model, part)):
            updates[part] = getattr(model.config, part).model_copy(update={"lora": None})
    if updates:
        model.config = model.config.model_copy(update=updates)
    return model


def count_parameters(module: nn.Module) -> tuple[int, int]:
    """(total, trainable) parameter counts; works on the meta device."""
    total = trainable = 0
    for p in module.parameters():
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    return total, trainable
