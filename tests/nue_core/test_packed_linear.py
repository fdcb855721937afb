"""Packed (oneDNN) linear layers: same values as nn.Linear, swapped in place, decoding unchanged."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nue_core.packed_linear import PackedLinear, is_packed, measure_packed_speedup, pack_linears, packing_available

pytestmark = pytest.mark.skipif(not packing_available(), reason="this torch build has no oneDNN packed linear")


@pytest.mark.parametrize("shape", [(1, 64), (8, 64), (3, 5, 64)])
@pytest.mark.parametrize("bias", [True, False])
def test_values_equal_nn_linear(shape: tuple[int, ...], bias: bool) -> None:
    torch.manual_seed(0)
    layer = nn.Linear(64, 96, bias=bias)
    x = torch.randn(*shape)
    with torch.inference_mode():
        torch.testing.assert_close(PackedLinear(layer)(x), layer(x), rtol=1e-5, atol=1e-5)


def test_pack_linears_replaces_only_float32_linear_layers() -> None:
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Sequential(nn.Linear(8, 4), nn.Linear(4, 2).to(torch.bfloat16)))
    assert pack_linears(model) == 2
    assert isinstance(model[0], PackedLinear) and isinstance(model[2][0], PackedLinear)
    assert type(model[2][1]) is nn.Linear and is_packed(model)
    assert measure_packed_speedup(features=64) > 0


def test_decoding_with_packed_decoder_gives_the_same_ids() -> None:
    """A GPT-NeoX decoder with packed layers decodes as the plain one, in static batches and on the engine."""
    from nue_core.composer import compose
    from nue_core.generation import GenerationConfig
    from nue_core.inference.engine import Engine
    from tests.conftest import make_audio, tiny_config

    torch.manual_seed(0)
    model = compose(tiny_config()).eval()
    with torch.no_grad():
        model.decoder.model.get_output_embeddings().weight.mul_(8.0)  # confident logits: no near ties
    waves, lengths = make_audio([0.6, 1.0, 0.8])
    cfg = GenerationConfig(max_new_tokens=8, repetition_limit=0)
    with torch.inference_mode():
        plain = model.generate(waves, lengths, cfg)
        assert pack_linears(model.decoder) > 0
        packed = model.generate(waves, lengths, cfg)
        engine = [r.ids for r in Engine(model, cfg).run([w[:n].numpy() for w, n in zip(waves, lengths)])]
    assert packed == plain and engine == plain
