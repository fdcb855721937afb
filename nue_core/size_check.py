"""Bound every size before it is allocated: a model's parameters, and the memory there is for them.

The composer runs three checks, cheapest first (``nue_core.composer.compose``):

1. ``check_size_fields``: the well-known size fields of each part's options (``num_hidden_layers``,
   ``hidden_size``, ``intermediate_size``, ``vocab_size`` ...), wherever they sit (a plugin's own
   options or a free-form architecture dict such as ``decoder.config``), must be positive integers,
   and no layer count may exceed ``MAX_LAYERS``: building a million layers takes minutes and
   gigabytes even on the meta device, so the cap guards the next step.
2. ``check_estimate``: the product of those fields is a lower bound on the parameter count, read
   as transformers names them: a layer of width h and feed-forward width f holds at least
   h^2 + 2hf weights (a transformer layer 4h^2 + 2hf or more), an embedding vocab x h. A bound
   beyond the available memory is refused at once, with the estimate.
3. ``check_built``: the model is built on the meta device (no memory), its parameters and
   buffers are counted in their dtypes, and a model that cannot fit is refused before the real
   build. This is exact and works for any plugin, first- or third-party, whatever its fields.

Steps 2 and 3 apply only when weights are allocated (``compose(describe=False)``); describing a
model that would not fit here is allowed, it costs nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

from nue_core.errors import ConfigError

if TYPE_CHECKING:  # audio loading uses this module too, and needs no torch
    import torch

# Deeper than any published model by two orders of magnitude (the deepest are ~100-200 layers).
MAX_LAYERS = 10_000

LAYER_KEYS = frozenset({"num_hidden_layers", "num_layers", "n_layer", "n_layers", "num_decoder_layers",
                        "num_encoder_layers", "encoder_layers", "decoder_layers"})
WIDTH_KEYS = frozenset({"hidden_size", "d_model", "n_embd", "hidden_dim", "embed_dim"})
FFN_KEYS = frozenset({"intermediate_size", "ffn_size", "ffn_dim", "n_inner", "encoder_ffn_dim", "decoder_ffn_dim"})
VOCAB_KEYS = frozenset({"vocab_size"})
# Other counts that must be positive (they size modules or tensors) but do not enter the estimate.
COUNT_KEYS = frozenset({"num_attention_heads", "num_heads", "n_head", "num_key_value_heads", "num_queries",
                        "conv_channels", "n_mels", "max_position_embeddings", "n_positions"})
# Lists with one entry per layer: each entry is a positive size, the length is a layer count.
PER_LAYER_LISTS = frozenset({"kernel_sizes", "strides", "conv_dim", "conv_kernel", "conv_stride"})

_BYTES = {"float64": 8, "float32": 4, "bfloat16": 2, "float16": 2}


class ModelTooLargeError(ConfigError):
    """A model (or part) that cannot be built here; the message gives the estimate."""


@dataclass
class Scope:
    """Size fields found in one mapping of a part's options (the options, or a dict inside them).

    ``layers`` counts only the fields that name a layer count (per-layer lists such as a conv
    front end's ``conv_dim`` are capped, but describe layers of another kind)."""

    where: str
    layers: int = 0
    width: int = 0
    ffn: int = 0
    vocab: int = 0

    def lower_bound(self) -> int:
        """Parameters this mapping describes at least (0 when it gives no width)."""
        return self.layers * (self.width**2 + 2 * self.width * self.ffn) + self.vocab * self.width


def check_size_fields(where: str, options: dict[str, Any], typed: frozenset[str] = frozenset()) -> list[Scope]:
    """Check the size fields of one part's options; return what they say per mapping.

    Args:
        where: the part's config path, e.g. ``decoder`` (named in errors: ``decoder.config.hidden_size``).
        options: the part's plugin options (raw, as in the config).
        typed: top-level keys the plugin's options model declares: their bounds are the plugin's
            own (``num_layers: 0`` may mean "none"), so only negative values are refused there.
            Inside free-form mappings (an architecture dict) zero layers are refused too: they
            build a model without layers, silently.

    Raises:
        ConfigError: a size that is not a positive integer, or a layer count above MAX_LAYERS.
    """
    scopes: list[Scope] = []
    for path, mapping in _mappings(where, options):
        scope = Scope(path)
        for key, value in mapping.items():
            field = f"{path}.{key}"
            zero_ok = path == where and key in typed and key in LAYER_KEYS
            if key in PER_LAYER_LISTS and isinstance(value, list):
                for i, item in enumerate(value):
                    _positive(f"{field}[{i}]", item, zero_ok=False)
                _layer_cap(field, len(value), "entries (one per layer)")
            elif key in LAYER_KEYS:
                scope.layers += _layer_cap(field, _positive(field, value, zero_ok), "layers")
            elif key in WIDTH_KEYS:
                scope.width = max(scope.width, _positive(field, value))
            elif key in FFN_KEYS:
                scope.ffn = max(scope.ffn, _positive(field, value))
            elif key in VOCAB_KEYS:
                scope.vocab = max(scope.vocab, _positive(field, value))
            elif key in COUNT_KEYS:
                _positive(field, value)
        scopes.append(scope)
    return scopes


def _mappings(path: str, value: Any, depth: int = 0) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every mapping inside ``value`` (itself included) with its dotted path."""
    if isinstance(value, dict) and depth < 16:  # configs nest 2-3 deep; YAML is bounded anyway
        yield path, value
        for key, child in value.items():
            yield from _mappings(f"{path}.{key}", child, depth + 1)


def _positive(field: str, value: Any, zero_ok: bool = False) -> int:
    """``value`` as a size; None (unset) counts as 0. Booleans, fractions and values below 1 fail."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < (0 if zero_ok else 1):
        shown = repr(value)[:40] + (" (YAML reads yes/no/on/off/true/false as booleans)" if isinstance(value, bool) else "")
        need = "a whole number >= 0" if zero_ok else "a positive whole number"
        raise ConfigError(f"{field}: must be {need}, got {shown}")
    return value


def _layer_cap(field: str, count: int, what: str) -> int:
    if count > MAX_LAYERS:
        raise ModelTooLargeError(f"{field}: {count:,} {what} is beyond what nue builds (at most {MAX_LAYERS:,}); "
                                 "is a digit too many?")
    return count


def check_estimate(scopes: dict[str, list[Scope]], dtypes: dict[str, str], available: int | None) -> None:
    """Refuse a model whose lower-bound parameter count cannot fit in ``available`` bytes.

    Args:
        scopes: per part (``encoder``...), what ``check_size_fields`` found.
        dtypes: per part, the dtype its weights are built in (default float32).
        available: bytes this process may still allocate (None: unknown, no check).
    """
    if available is None:
        return
    total, parts = 0, []
    for part, found in scopes.items():
        size = _BYTES.get(dtypes.get(part, "float32"), 4)
        for scope in found:
            count = scope.lower_bound()
            total += count * size
            if count:
                parts.append((count * size, f"{scope.where}: ~{_g(count)} parameters "
                              f"({human_bytes(count * size)} in {dtypes.get(part, 'float32')})"))
    if total > available:
        largest = max(parts)[1]
        raise ModelTooLargeError(f"{largest} exceeds the available memory ({human_bytes(available)}); "
                                 "make the model smaller")


def count_bytes(module: torch.nn.Module) -> tuple[int, int]:
    """(elements, bytes) of a module's parameters and buffers, each shared tensor once (meta works)."""
    seen: set[int] = set()
    elements = size = 0
    for tensor in [*module.parameters(), *module.buffers()]:
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        elements += tensor.numel()
        size += tensor.numel() * tensor.element_size()
    return elements, size


def check_built(parts: dict[str, torch.nn.Module], available: int | None) -> None:
    """Refuse a model whose parts (built on the meta device) need more than ``available`` bytes."""
    if available is None:
        return
    counts = {name: count_bytes(module) for name, module in parts.items()}
    total = sum(b for _, b in counts.values())
    if total > available:
        each = "; ".join(f"{name}: {_g(n)} parameters, {human_bytes(b)}" for name, (n, b) in counts.items())
        raise ModelTooLargeError(f"the model needs {human_bytes(total)} for its weights ({each}), more than the "
                                 f"available memory ({human_bytes(available)}); make it smaller or free memory")


def available_memory() -> int | None:
    """Bytes this process can still allocate: the least of free RAM, the cgroup's room and the
    address-space limit's room (``ulimit -v``). None when none of them can be read."""
    rooms = [room for room in (_ram_available(), _cgroup_room(), _rlimit_room()) if room is not None]
    return max(min(rooms), 0) if rooms else None


def _ram_available() -> int | None:
    try:
        import psutil  # a dependency of accelerate, so normally present

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _cgroup_room() -> int | None:
    """Room left under a cgroup v2 memory limit (containers), or None."""
    try:
        with open("/sys/fs/cgroup/memory.max", encoding="ascii") as handle:
            limit = handle.read().strip()
        if limit == "max":
            return None
        with open("/sys/fs/cgroup/memory.current", encoding="ascii") as handle:
            return int(limit) - int(handle.read().strip())
    except (OSError, ValueError):
        return None


def _rlimit_room() -> int | None:
    """Room left under RLIMIT_AS: the limit less the address space already mapped."""
    try:
        import resource  # POSIX only
    except ImportError:
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            mapped = int(handle.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        mapped = 0
    return soft - mapped


def _g(count: int) -> str:
    """``4.1e+12``; sizes from a config can be integers too large for a float."""
    return f"{float(min(count, 10**300)):.2g}"


def human_bytes(count: float) -> str:
    """``16 TB``, ``3.2 GB``, ``512 MB``: decimal units, as memory is usually quoted."""
    count = float(min(count, 10**300))
    for unit, scale in (("PB", 1e15), ("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if count >= scale:
            return f"{count / scale:.3g} {unit}"
    return f"{int(count)} B"
