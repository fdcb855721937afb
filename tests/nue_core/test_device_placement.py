"""Device placement: a model moved to a device decodes there with inputs given on the CPU.

Runs on the CPU by default; ``NUE_TEST_DEVICE=cuda`` (as ``benchmarks/gpu_check.py`` sets it) runs
the same tests on a GPU, where they compare the device's float32 ids with the CPU's and check that
bfloat16 decoding, the continuous-batching engine, the Transcriber and checkpoints work from there.
"""

from __future__ import annotations

import os

import pytest
import torch

from nue_core.composer import compose
from nue_core.generation import GenerationConfig
from tests.conftest import make_audio, tiny_config

DEVICE = os.environ.get("NUE_TEST_DEVICE", "cpu")
if DEVICE.startswith("cuda") and not torch.cuda.is_available():
    pytest.skip(f"NUE_TEST_DEVICE={DEVICE} but CUDA is not available", allow_module_level=True)

CFG = GenerationConfig(repetition_limit=0, max_new_tokens=6)
SECONDS = [0.8, 0.4, 0.6]


@pytest.fixture(autouse=True)
def _exact_float32():
    """No TF32 matmuls on the GPU: float32 there should give the CPU's ids."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def _model(bridge: str = "conv"):
    torch.manual_seed(0)
    model = compose(tiny_config(bridge=bridge)).eval()
    with torch.no_grad():  # sharper head: ids vary, and small numeric differences rarely flip them
        model.decoder.model.get_output_embeddings().weight.mul_(8.0)
    return model


def _audio():
    return make_audio(SECONDS, seed=3)


@torch.no_grad()
def test_moved_model_decodes_on_device_with_the_cpu_ids() -> None:
    model = _model()
    waves, lengths = _audio()
    cpu_ids = model.generate(waves, lengths, CFG)
    model.to(DEVICE)
    assert model.device.type == torch.device(DEVICE).type
    assert all(p.device.type == model.device.type for p in model.parameters())
    assert all(b.device.type == model.device.type for b in model.buffers())
    ids = model.generate(waves.to(DEVICE), lengths.to(DEVICE), CFG)
    assert ids == cpu_ids


@torch.no_grad()
def test_bfloat16_on_device_decodes() -> None:
    model = _model().to(device=DEVICE, dtype=torch.bfloat16)
    assert model.input_dtype is torch.bfloat16
    waves, lengths = _audio()
    ids = model.generate(waves.to(DEVICE, torch.bfloat16), lengths.to(DEVICE), CFG)
    assert len(ids) == len(SECONDS) and all(0 < len(x) <= CFG.max_new_tokens for x in ids)
    assert all(isinstance(t, int) for x in ids for t in x)


@torch.no_grad()
def test_engine_on_device_equals_generate_on_device() -> None:
    from nue_core.inference.engine import Engine, EngineLimits

    model = _model().to(DEVICE)
    waves, lengths = _audio()
    alone = [model.generate(waves[i : i + 1, : lengths[i]].to(DEVICE), lengths[i : i + 1].to(DEVICE), CFG)[0]
             for i in range(len(SECONDS))]
    clips = [waves[i, : lengths[i]].numpy() for i in range(len(SECONDS))]  # CPU numpy in, as a server gets
    results = Engine(model, CFG, EngineLimits(max_rows=2, max_prefill=2)).run(clips)
    assert [r.ids for r in results] == alone


def test_transcriber_moves_the_model_and_takes_cpu_audio() -> None:
    from nue_core.inference.transcriber import Transcriber

    model = _model()
    waves, lengths = _audio()
    clips = [waves[i, : lengths[i]].numpy() for i in range(len(SECONDS))]
    transcriber = Transcriber(model, batch_size=2, device=DEVICE, generation=CFG)
    assert model.device.type == torch.device(DEVICE).type
    results = transcriber.transcribe(clips)
    assert len(results) == len(clips) and all(isinstance(r.text, str) for r in results)


def test_checkpoint_saved_from_device_loads_on_cpu(tmp_path) -> None:
    from nue_core.checkpoint import load, save_model

    model = _model().to(DEVICE)
    save_model(model, tmp_path / "m")
    back = load(tmp_path / "m")
    assert back.device.type == "cpu"
    cpu_state = {k: v.cpu() for k, v in model.state_dict().items()}
    assert all(torch.equal(cpu_state[k], v) for k, v in back.state_dict().items())
