"""Inputs as callers give them: a FIFO or folder is named for what it is, and anything that is not
numeric audio fails alone, as a per-item error, while the other items are transcribed."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis.extra import numpy as hnp

from nue_core.composer import compose
from nue_core.data.audio import AudioError
from nue_core.data.manifest import Utterance
from nue_core.errors import InputError
from nue_core.inference import transcribe
from nue_core.inference.sources import load_input, read_entries
from tests.conftest import tiny_config


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_fifo_is_not_a_regular_file_and_is_not_opened(tmp_path):
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    for item in (fifo, str(fifo), Utterance("u", fifo)):
        with pytest.raises(AudioError, match=r"pipe.wav: not a regular file \(a FIFO\); give an audio file"):
            load_input(item, 16000, str(fifo))  # opening it would block: this returns at once


def test_folder_and_missing_file_are_named_for_what_they_are(tmp_path):
    with pytest.raises(AudioError, match="is a folder, not an audio file"):
        load_input(tmp_path, 16000, str(tmp_path))
    with pytest.raises(AudioError, match="audio file not found"):
        load_input(tmp_path / "nope.wav", 16000, "nope.wav")


@pytest.mark.parametrize("item", [
    np.array(["0.1", "0.2"]), np.array([0.1, None], dtype=object), np.array([0.1 + 1j, 0.2]),
    np.array([True, False]), np.zeros(3, dtype=[("a", "f4")]), torch.tensor([0.1 + 0.2j]),
    {"samples": [0.1]}, ["0.1", "0.2"], None, 3.5, (np.zeros(800, np.float32), True), (np.zeros(8), 16000, 1),
])
def test_not_numeric_audio_is_an_audio_error(item):
    with pytest.raises(AudioError, match="<array 0>: "):
        load_input(item, 16000, "<array 0>")


def test_integer_tensors_are_scaled_like_integer_arrays():
    samples = np.array([0, 16384, -32767] * 300, dtype=np.int16)
    from_tensor = load_input(torch.from_numpy(samples), 16000, "t")
    assert np.allclose(from_tensor, load_input(samples, 16000, "a")) and np.abs(from_tensor).max() <= 1.0


def test_unexpected_failure_of_one_input_is_that_input_s_error(monkeypatch):
    import nue_core.inference.sources as sources

    def explode(*args, **kwargs):
        raise MemoryError("std::bad_alloc")
    monkeypatch.setattr(sources, "prepare_waveform", explode)
    with pytest.raises(AudioError, match=r"<array 0>: cannot use this input \(MemoryError: std::bad_alloc\)"):
        load_input(np.zeros(800, np.float32), 16000, "<array 0>")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return compose(tiny_config())


def test_model_transcribe_reports_bad_items_and_returns_the_others(model):
    good = np.random.default_rng(0).standard_normal(8000).astype(np.float32) * 0.1
    inputs = [good, np.array(["a", "b"]), np.array([1, "x"], dtype=object), good.astype(np.complex64),
              {"audio": good}, (good, 16000)]
    results = transcribe(model, inputs)
    assert len(results) == len(inputs)
    assert [r.ok for r in results] == [True, False, False, False, False, True]
    assert "got an array of <U1" in results[1].error and "got an array of object" in results[2].error
    assert "complex64" in results[3].error and "got dict" in results[4].error


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(array=hnp.arrays(dtype=hnp.array_dtypes(), shape=hnp.array_shapes(max_dims=3, max_side=6)))
def test_any_array_gives_samples_or_an_audio_error(array):
    """60 generated cases: arrays of every dtype and shape, never an exception other than AudioError."""
    try:
        samples = load_input(array, 16000, "<array 0>")
    except AudioError as exc:
        assert str(exc).startswith("<array 0>: ")
        return
    assert samples.dtype == np.float32 and samples.ndim == 1 and np.isfinite(samples).all()


@pytest.mark.parametrize(("exc", "expected"), [
    (PermissionError(13, "Permission denied"), "cannot read (permission denied)"),
    (IsADirectoryError(21, "Is a directory"), "cannot read (is a folder)"),
    (UnicodeDecodeError("utf-8", b"ab\xff", 2, 3, "invalid start byte"), "not UTF-8 text (byte 0xff at offset 2)"),
    (RecursionError("maximum recursion depth exceeded"), "nested too deeply"),
])
def test_manifest_that_cannot_be_read_is_an_input_error(exc, expected, tmp_path, monkeypatch):
    import nue_core.inference.sources as sources

    def fail(*args, **kwargs):
        raise exc
    monkeypatch.setattr(sources, "read_manifest", fail)
    with pytest.raises(InputError) as err:
        read_entries(tmp_path / "m.jsonl", require_text=False)
    assert str(err.value).startswith(f"{tmp_path / 'm.jsonl'}: ") and expected in str(err.value)
