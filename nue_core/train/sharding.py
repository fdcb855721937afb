"""Fully sharded training (FSDP2, ``torch.distributed.fsdp.fully_shard``): wrap, gather, restore.

Each process keeps 1/N of every weight, gradient and optimizer state; a block's whole weights are
all-gathered just for its forward and backward. This is how a model whose AdamW state does not fit
one device trains on several (the paper's 3.6B decoder: about 58 GB of fp32 weights, gradients and
AdamW moments, 1/N of it per device).

Why the trainer calls ``fully_shard`` itself (``TrainConfig.fsdp``) rather than leaving it to
accelerate's FSDP plugin: accelerate (1.x) selects FSDP only for GPU-like process groups; on CPU its
state stays ``MULTI_CPU`` even with ``ACCELERATE_USE_FSDP=true`` or an explicit
``FullyShardedDataParallelPlugin(fsdp_version=2)``, and ``prepare`` wraps the model in DDP instead.
``fully_shard`` itself runs on any device and backend (gloo on CPU), so ``fsdp: true`` shards the
same way on CPU and GPU, and the two-process CPU test covers the code a GPU run takes. A model that
accelerate sharded (its FSDP2 config, GPUs) is handled by the same functions here: everything below
looks at the model (``is_sharded``), not at how it was wrapped.

Checkpoints keep the layout of an unsharded run (``nue_core.train.checkpointing``): the weights and
the optimizer state are gathered whole onto the main process (torch.distributed.checkpoint's
``full_state_dict``) and the optimizer's parameters numbered as ``Optimizer.state_dict`` numbers
them, so a checkpoint does not depend on the number of processes that wrote it. Restoring hands
every rank the whole state and each keeps its own slice: bit-exact.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch
from torch import nn

from nue_core.errors import ConfigError


def is_sharded(model: nn.Module) -> bool:
    """Whether ``model`` (or a part of it) was wrapped by ``fully_shard`` (here or by accelerate)."""
    from torch.distributed.fsdp import FSDPModule

    return any(isinstance(m, FSDPModule) for m in model.modules())


def wants_own_sharding(fsdp: bool, precision: str, accelerator: Any) -> bool:
    """Whether the trainer should call ``fully_shard`` itself (``fsdp: true`` on several processes).

    One process has nothing to shard over (the setting is ignored there); a run that accelerate
    already shards (its FSDP config on GPUs) is not wrapped twice.

    Raises:
        ConfigError: accelerate's FSDP version 1 (its state cannot be checkpointed in the run's
            layout), or ``fsdp`` with fp16 (loss scaling of sharded gradients is untested).
    """
    from accelerate.utils import DistributedType

    if accelerator.distributed_type == DistributedType.FSDP:
        if not getattr(accelerator, "is_fsdp2", False):
            raise ConfigError("accelerate's FSDP version 1 is not supported: set fsdp_version: 2 in the accelerate "
                              "config, or drop accelerate's FSDP config and set fsdp: true")
        return False
    if not fsdp or accelerator.num_processes < 2:
        return False
    if precision == "fp16":
        raise ConfigError("fsdp with precision fp16 is not supported (loss scaling of sharded gradients is untested): "
                          "use bf16 or fp32")
    return True


def shard_blocks(model: nn.Module) -> list[nn.Module]:
    """The repeated blocks that get an all-gather of their own: transformers layers, found the way
    accelerate's TRANSFORMER_BASED_WRAP finds them (``_no_split_modules`` of every transformers
    model inside), counting only members of an ``nn.ModuleList``, whose ``forward`` their model
    calls (a module whose parts are called directly would skip FSDP's hooks)."""
    names: set[str] = set()
    for module in model.modules():
        names.update(getattr(module, "_no_split_modules", None) or ())
    return [child for module in model.modules() if isinstance(module, nn.ModuleList)
            for child in module if type(child).__name__ in names]


def shard_model(model: nn.Module, device: torch.device, unused_params: bool = True) -> nn.Module:
    """``fully_shard`` each block (``shard_blocks``) and then the rest of ``model``, in place.

    Args:
        model: identical on every rank (seeded init or loaded weights); frozen parts and LoRA
            adapters may share a block (FSDP2 keeps ``requires_grad`` per parameter).
        device: this rank's device (the process group is already initialised).
        unused_params: reduce zero gradients for parameters that got none on this rank in a step
            (SpecAugment's mask embedding ...), so every rank joins the same reduce-scatter: the
            FSDP form of DDP's ``find_unused_parameters``.

    Returns:
        ``model``, now an ``FSDPModule`` whose parameters are ``DTensor`` shards. ``fully_shard``
        flags every module it manages (``_is_fsdp_managed_module``), which turns HuBERT's LayerDrop
        off: every rank must gather the same blocks in the same order.
    """
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    model.to(device)
    for block in reversed(shard_blocks(model)):  # inner blocks first: fully_shard wants children before parents
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    model.set_reduce_scatter_unused_params(unused_params)  # type: ignore[operator]
    return model


def full_tensor(value: Any) -> Any:
    """A ``DTensor`` (a sharded norm ...) as the whole plain tensor; anything else unchanged."""
    from torch.distributed.tensor import DTensor

    return value.full_tensor() if isinstance(value, DTensor) else value


def grad_norm(params: list[nn.Parameter], max_norm: float | None) -> torch.Tensor:
    """The global gradient norm over every rank's shards, clipping to ``max_norm`` when given.

    Shapes: returns a 0-d plain tensor, the same on every rank.
    """
    grads = [p.grad for p in params if p.grad is not None]
    total = full_tensor(torch.nn.utils.get_total_norm(grads))
    if max_norm is not None:
        torch.nn.utils.clip_grads_with_norm_(params, max_norm, total)
    return total


def full_model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The whole weights (collective: every rank calls it): CPU tensors on rank 0, ``{}`` elsewhere."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def full_optimizer_state(model: nn.Module, optimizer: Any) -> dict[str, Any]:
    """The whole optimizer state (collective) in ``Optimizer.state_dict``'s numbering: rank 0 only.

    Returns:
        ``{"state": {index: {name: tensor}}, "param_groups": [...]}`` with CPU tensors on rank 0,
        ``{}`` on the other ranks.
    """
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    by_name = get_optimizer_state_dict(model, _inner(optimizer), options=options)
    if not by_name:
        return {}
    index = {name: i for i, name in enumerate(parameter_names(model, optimizer))}
    return {"state": {index[name]: entry for name, entry in by_name["state"].items()},
            "param_groups": [{**group, "params": [index[n] for n in group["params"]]}
                             for group in by_name["param_groups"]]}


def load_full_weights(model: nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Restore whole weights: every rank passes the same whole state dict and keeps its slice
    (collective).

    Raises:
        KeyError, ValueError, RuntimeError: the weights do not fit this model.
    """
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    set_model_state_dict(model, weights, options=StateDictOptions(full_state_dict=True))


def load_full_optimizer(model: nn.Module, optimizer: Any, state: dict[str, Any]) -> None:
    """Restore a whole optimizer state in ``Optimizer.state_dict``'s numbering (what
    ``full_optimizer_state`` returns); every rank passes the same and keeps its slice (collective).

    Raises:
        KeyError, IndexError, ValueError, TypeError, RuntimeError: the state does not fit this optimizer.
    """
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    names = parameter_names(model, optimizer)
    by_name = {"state": {names[int(i)]: entry for i, entry in state["state"].items()},
               "param_groups": [{**group, "params": [names[int(i)] for i in group["params"]]}
                                for group in state["param_groups"]]}
    set_optimizer_state_dict(model, _inner(optimizer), by_name, options=StateDictOptions(full_state_dict=True))


def parameter_names(model: nn.Module, optimizer: Any) -> list[str]:
    """The optimizer's parameters in its own order (the numbering of its ``state_dict``), by name."""
    names = {id(p): name for name, p in model.named_parameters()}
    return [names[id(p)] for group in optimizer.param_groups for p in group["params"]]


@contextlib.contextmanager
def gathered(model: nn.Module) -> Iterator[None]:
    """Whole weights on every rank for the block (collective on entry), so that one rank can run
    forward passes alone (validation, generation) without an all-gather the others would have to
    join; a no-op for an unsharded model. Costs the whole weights' memory on every rank meanwhile."""
    from torch.distributed.fsdp import FSDPModule

    modules = [m for m in model.modules() if isinstance(m, FSDPModule)]
    for module in modules:
        module.set_reshard_after_forward(False, recurse=False)
        module.unshard()
    try:
        yield
    finally:
        for module in modules:
            module.reshard()
            # FSDP2's defaults: blocks free their whole weights after forward, the root keeps them
            # (backward needs them at once)
            module.set_reshard_after_forward(module is not model, recurse=False)
        if isinstance(model, FSDPModule):
            # Forward passes without a backward leave FSDP's per-step records behind (the order
            # blocks ran in, which backward prefetching follows): on the rank that validated they
            # would make the next backward all-gather in another order than the others (a hang).
            model.reset_iter_state()


def _inner(optimizer: Any) -> torch.optim.Optimizer:
    """The torch optimizer inside accelerate's wrapper."""
    return getattr(optimizer, "optimizer", optimizer)
