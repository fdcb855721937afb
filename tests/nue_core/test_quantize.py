"""``--quantize int8``: the decoder's linear layers in dynamic int8, inside HF forward, generate and the engine."""

import pytest
import torch
from torch import nn

from nue_core.composer import compose
from nue_core.errors import ConfigError
from nue_core.generation import GenerationConfig
from nue_core.quantize import check_quantize, is_quantized, quantize_decoder
from tests.conftest import make_audio, tiny_config

CFG = GenerationConfig(max_new_tokens=5, repetition_limit=0)
SECONDS = [0.8, 0.4, 0.6]


def _model():
    torch.manual_seed(0)
    model = compose(tiny_config()).eval()
    with torch.no_grad():  # a sharper head: ids vary, and small numeric differences rarely flip them
        model.decoder.model.get_output_embeddings().weight.mul_(8.0)
    return model


def _linears(module: nn.Module) -> list[str]:
    return [name for name, m in module.named_modules() if type(m) is nn.Linear]


def test_decoder_linears_become_int8_the_head_and_other_parts_stay() -> None:
    model = _model()
    before = _linears(model.decoder)
    encoder_linears = _linears(model.encoder)
    names = quantize_decoder(model.decoder)
    head = model.decoder.model.get_output_embeddings()
    assert type(head) is nn.Linear  # the LM head stays float32 by default
    assert sorted(names) == sorted(n for n in before if not n.endswith("lm_head"))
    assert _linears(model.decoder) == [n for n in before if n.endswith("lm_head")]
    assert is_quantized(model.decoder) and not is_quantized(model.encoder) and not is_quantized(model.bridge)
    assert _linears(model.encoder) == encoder_linears
    assert quantize_decoder(model.decoder, lm_head=True) == [n for n in before if n.endswith("lm_head")]


def test_quantized_decoder_generates_close_to_float32() -> None:
    model = _model()
    waves, lengths = make_audio(SECONDS)
    with torch.no_grad():
        ref = model.generate(waves, lengths, CFG)
        quantize_decoder(model.decoder)
        got = model.generate(waves, lengths, CFG)
        beams = model.generate(waves, lengths, GenerationConfig(max_new_tokens=4, repetition_limit=0, num_beams=2))
    assert [len(x) for x in got] and len(beams) == len(SECONDS)
    same = sum(a == b for x, y in zip(ref, got) for a, b in zip(x, y))
    total = sum(max(len(x), len(y)) for x, y in zip(ref, got))
    assert same / total >= 0.5, (ref, got)


def test_quantized_decoder_in_the_engine() -> None:
    """One row at a time the engine gives generate's ids exactly; with rows batched it still decodes
    (dynamic int8 scales activations per call, so ids may differ a little with the batch's make-up)."""
    from nue_core.inference.engine import Engine, EngineLimits

    model = _model()
    quantize_decoder(model.decoder)
    waves, lengths = make_audio(SECONDS)
    with torch.no_grad():
        alone = [model.generate(waves[i : i + 1, : lengths[i]], lengths[i : i + 1], CFG)[0] for i in range(len(SECONDS))]
    clips = [waves[i, : lengths[i]].numpy() for i in range(len(SECONDS))]
    results = Engine(model, CFG, EngineLimits(max_rows=1, max_prefill=1)).run(clips)
    assert [r.ids for r in results] == alone
    batched = Engine(model, CFG, EngineLimits(max_rows=2, max_prefill=2)).run(clips)
    assert [len(r.ids) > 0 for r in batched] == [len(x) > 0 for x in alone]


def test_transcriber_quantizes_and_refuses_what_it_cannot() -> None:
    from nue_core.inference import Transcriber

    model = _model()
    transcriber = Transcriber(model, dtype="float32", quantize="int8", generation=CFG)
    assert transcriber.precision is not None and transcriber.precision.quantize == "int8"
    assert is_quantized(model.decoder)
    Transcriber(model, dtype="float32", quantize="int8", generation=CFG)  # a second time: already int8, no error
    with pytest.raises(ConfigError, match="float32 decoder"):
        quantize_decoder(_model().to(torch.bfloat16).decoder)
    with pytest.raises(ConfigError, match="unknown quantization"):
        check_quantize("int4")


def test_run_options_check_quantize_before_loading() -> None:
    from nue_core.errors import NueError
    from nue_core.inference.runner import RunOptions

    assert RunOptions().dtype == "auto" and RunOptions().quantize is None
    with pytest.raises(NueError, match="unknown --quantize"):
        RunOptions(quantize="int4")
    with pytest.raises(NueError, match="unknown --dtype"):
        RunOptions(dtype="int8")
