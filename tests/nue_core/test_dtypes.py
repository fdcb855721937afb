"""Dtype names resolve to torch dtypes; unknown names are a ConfigError naming the choices."""

from __future__ import annotations

import pytest
import torch

from nue_core.dtypes import resolve_dtype
from nue_core.errors import ConfigError


def test_resolve_dtype() -> None:
    assert resolve_dtype("bfloat16") is torch.bfloat16
    assert resolve_dtype(torch.float16) is torch.float16
    assert resolve_dtype(None) is None
    with pytest.raises(ConfigError, match="choose one of float32, bfloat16, float16"):
        resolve_dtype("fp8")
