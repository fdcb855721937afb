import numpy as np
import pytest
import soundfile as sf

from nue_core.data.audio import AudioError, audio_duration, load_audio, prepare_waveform


def _write(path, data, rate, subtype="PCM_16"):
    sf.write(str(path), data, rate, subtype=subtype)
    return path


def test_resamples_and_mixes_down(tmp_path):
    t = np.arange(8000) / 8000
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 440 * t)], axis=1) * 0.5
    path = _write(tmp_path / "a.wav", stereo, 8000)
    audio = load_audio(path, 16000)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) - 16000) <= 2
    assert abs(np.abs(audio).max() - 0.5) < 0.02
    assert audio_duration(path) == pytest.approx(1.0)


def test_segment_bounds(tmp_path):
    data = np.linspace(-0.5, 0.5, 16000).astype(np.float32)
    path = _write(tmp_path / "b.wav", data, 16000, "FLOAT")
    seg = load_audio(path, 16000, start=0.25, end=0.5)
    assert len(seg) == 4000 and np.allclose(seg, data[4000:8000])


def test_errors_name_the_file(tmp_path):
    with pytest.raises(AudioError, match="missing.wav"):
        load_audio(tmp_path / "missing.wav", 16000)
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF\x00\x00not really audio")
    with pytest.raises(AudioError, match="junk.wav"):
        load_audio(junk, 16000)
    empty = _write(tmp_path / "empty.wav", np.zeros(0), 16000)
    with pytest.raises(AudioError, match="empty"):
        load_audio(empty, 16000)


def test_arrays_int_scaling_and_non_finite():
    ints = (np.ones(100) * 16384).astype(np.int16)
    assert np.allclose(prepare_waveform(ints, 16000, 16000), 16384 / 32767)
    with pytest.raises(AudioError, match="NaN"):
        prepare_waveform(np.array([0.0, np.nan], dtype=np.float32), 16000, 16000)
