"""The floating-point dtypes a model may be built or run in, by the names configs and flags use."""

from __future__ import annotations

from typing import Literal

import torch

from nue_core.errors import ConfigError

DTypeName = Literal["float32", "bfloat16", "float16"]
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    """A torch dtype from its name; a torch dtype and None pass through unchanged.

    Raises:
        ConfigError (a ValueError): the name is not one of ``DTYPES``.
    """
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ConfigError(f"unknown dtype '{dtype}'; choose one of {', '.join(DTYPES)}")
    return DTYPES[dtype]
