"""Transcriber: input kinds, per-input errors, input order, batching, long audio, OOM back-off."""

import numpy as np
import pytest
import soundfile as sf
import torch

import nue_core
from nue_core.composer import compose
from nue_core.generation import GenerationConfig
from nue_core.inference import Transcriber
from nue_core.inference.transcriber import is_out_of_memory
from tests.conftest import tiny_config

SR = 16000


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = compose(tiny_config(), ).eval()
    with torch.no_grad():  # a random tiny LM rarely says eos: sharpen it so outputs vary
        m.decoder.model.get_output_embeddings().weight.mul_(8.0)
    return m


def _noise(seconds: float, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(seconds * SR)) * 0.1).astype(np.float32)


def test_inputs_of_every_kind_in_input_order_with_errors_named(model, tmp_path):
    good = tmp_path / "good.wav"
    sf.write(good, _noise(0.7, 1), SR)
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF....WAVEfmt garbage" * 4)
    empty = tmp_path / "empty.flac"
    empty.write_bytes(b"")
    inputs = [good, _noise(0.5, 2), str(corrupt), (_noise(0.6, 3), 8000), empty, tmp_path / "missing.wav",
              torch.from_numpy(_noise(0.4, 4))]
    results = Transcriber(model, batch_size=3, generation=GenerationConfig(max_new_tokens=4)).transcribe(inputs)
    assert [r.source for r in results] == [str(good), "<array 1>", str(corrupt), "<array 3>", str(empty),
                                           str(tmp_path / "missing.wav"), "<array 6>"]
    failed = [r for r in results if not r.ok]
    assert [r.source for r in failed] == [str(corrupt), str(empty), str(tmp_path / "missing.wav")]
    assert all(r.source in r.error and r.text == "" for r in failed)
    ok = [r for r in results if r.ok]
    assert all(r.error is None and r.seconds > 0 and r.elapsed > 0 for r in ok)
    assert results[3].seconds == pytest.approx(0.6 * 2)  # 0.6 s worth of samples at 8 kHz = 1.2 s


def test_batched_equals_one_at_a_time(model):
    clips = [_noise(s, i) for i, s in enumerate([0.9, 0.3, 0.6, 0.45, 0.8])]
    cfg = GenerationConfig(max_new_tokens=12, repetition_limit=0)
    batched = [r.text for r in Transcriber(model, batch_size=4, generation=cfg).transcribe(clips)]
    single = [r.text for r in Transcriber(model, batch_size=1, generation=cfg).transcribe(clips)]
    assert batched == single and any(batched)


def test_forty_seconds_transcribed_in_chunks(model):
    long_clip = _noise(40.0, 7)
    long_clip[int(12.5 * SR) : int(12.8 * SR)] = 0.0  # a pause where the first cut should go
    tr = Transcriber(model, batch_size=4, generation=GenerationConfig(max_new_tokens=8))
    (res,) = tr.transcribe([long_clip])
    assert res.ok and res.chunks == 3 and res.seconds == pytest.approx(40.0)
    assert res.text  # joined text of three chunks


def test_too_short_clip_is_an_error_not_a_crash(model):
    results = Transcriber(model).transcribe([_noise(0.01, 1), _noise(0.5, 2)])
    assert "too short" in results[0].error and results[1].ok


def test_is_out_of_memory():
    assert is_out_of_memory(RuntimeError("CUDA error: out of memory"))
    assert is_out_of_memory(torch.OutOfMemoryError("x"))
    assert not is_out_of_memory(ValueError("out of memory"))  # only runtime errors count
    assert not is_out_of_memory(RuntimeError("shape mismatch"))


def test_speechlm_transcribe_and_bfloat16():
    torch.manual_seed(1)
    m = compose(tiny_config()).eval()
    results = nue_core.transcribe(m, [_noise(0.5, 1), _noise(0.3, 2)], dtype="bfloat16", num_beams=2,
                                   generation=GenerationConfig(max_new_tokens=4))
    assert all(r.ok for r in results)
    assert next(m.parameters()).dtype == torch.bfloat16  # dtype casts the model in place, like .to()


def _untrained_records(caplog):
    return [r for r in caplog.records if "untrained model" in r.getMessage()]


def test_untrained_model_warns_once_in_one_line(caplog, tmp_path):
    """A composed, never trained model: one warning naming what to do, however often it transcribes."""
    from nue_core.checkpoint import load, save_model

    model = compose(tiny_config()).eval()
    gen = GenerationConfig(max_new_tokens=2)
    with caplog.at_level("WARNING"):
        nue_core.transcribe(model, [_noise(0.3, 1)], generation=gen)
        nue_core.transcribe(model, [_noise(0.3, 2), _noise(0.4, 3)], generation=gen)
    (record,) = _untrained_records(caplog)
    assert record.levelname == "WARNING" and "\n" not in record.getMessage()
    assert "nue train" in record.getMessage() and "trained model folder" in record.getMessage()
    caplog.clear()
    save_model(model, tmp_path / "composed")  # `nue compose -o`: still untrained when loaded back
    with caplog.at_level("WARNING"):
        nue_core.transcribe(load(tmp_path / "composed"), [_noise(0.3, 1)], generation=gen)
    assert len(_untrained_records(caplog)) == 1


def test_trained_model_does_not_warn(caplog):
    from nue_core.checkpoint import load

    model = compose(tiny_config()).eval()
    model.is_trained = True
    with caplog.at_level("WARNING"):
        nue_core.transcribe(model, [_noise(0.3, 1)], generation=GenerationConfig(max_new_tokens=2))
        nue_core.transcribe(load("default"), [_noise(0.5, 2)])
    assert _untrained_records(caplog) == []


def test_run_transcription_of_a_preset_warns_once(caplog):
    """What `nue transcribe tiny` and `nue evaluate tiny` run: one warning for the whole run."""
    from nue_core.inference.runner import RunOptions, run_transcription

    with caplog.at_level("WARNING"):
        results = run_transcription("tiny", [_noise(0.3, 1), _noise(0.4, 2)],
                                    RunOptions(batch_size=1, progress=False, max_new_tokens=2), None)
    assert all(r.ok for r in results)
    assert len(_untrained_records(caplog)) == 1
