"""The one switch for activation (gradient) checkpointing: used by training and by the parts.

Training with ``gradient_checkpointing: true`` and a part's own ``gradient_checkpointing`` option
both come here, so a transformers model is switched on the same way whoever asks.
"""

from __future__ import annotations

from torch import nn

# Non-reentrant checkpointing: the layers' weights get gradients even when their inputs do not
# require grad (frozen conv features, a frozen LLM's inputs_embeds with LoRA).
_CHECKPOINT_KWARGS = {"use_reentrant": False}


def enable_gradient_checkpointing(model: nn.Module) -> int:
    """Turn on non-reentrant activation checkpointing in every transformers model inside ``model``.

    A module counts when it sets ``supports_gradient_checkpointing`` (transformers'
    ``PreTrainedModel`` does); ``model`` itself may be one. A model nested in one already switched
    on is left alone: the outer call reaches its layers.

    Args:
        model: any module (a SpeechLM, a part, or a transformers model).
    Returns:
        The number of modules switched on.
    """
    done: list[str] = []
    for name, module in model.named_modules():
        if not getattr(module, "supports_gradient_checkpointing", False):
            continue
        if any(name.startswith(f"{outer}.") or not outer for outer in done):
            continue
        # transformers >= 5.24 renamed the method; the old name warns before it goes in v6.
        enable = getattr(module, "activation_checkpointing_enable", None)
        if enable is not None:
            enable(activation_checkpointing_kwargs=dict(_CHECKPOINT_KWARGS))
        elif hasattr(module, "gradient_checkpointing_enable"):
            module.gradient_checkpointing_enable(gradient_checkpointing_kwargs=dict(_CHECKPOINT_KWARGS))
        else:
            continue
        done.append(name)
    return len(done)
