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


@pytest.mark.parametrize("rate", [1, 999, 384_001])
def test_sample_rates_outside_the_range_are_refused_naming_file_and_rate(tmp_path, rate):
    path = _write(tmp_path / f"r{rate}.wav", np.zeros(64, dtype=np.float32), rate)
    for read in (lambda: load_audio(path, 16000), lambda: audio_duration(path)):
        with pytest.raises(AudioError) as err:
            read()
        assert path.name in str(err.value) and f"sample rate {rate} Hz" in str(err.value)


@pytest.mark.parametrize("rate", [1000, 8000, 384_000])
def test_sample_rates_at_the_edges_of_the_range_are_read(tmp_path, rate):
    path = _write(tmp_path / "edge.wav", np.full(rate // 100, 0.25, dtype=np.float32), rate)
    assert load_audio(path, 16000).shape[0] == pytest.approx(160, abs=1)


def test_array_inputs_get_the_same_rate_bound():
    with pytest.raises(AudioError, match=r"<array 3>: sample rate 1 Hz"):
        prepare_waveform(np.zeros(100, dtype=np.float32), 1, 16000, source="<array 3>")


def test_lengths_beyond_the_bound_are_refused_before_reading(tmp_path, monkeypatch):
    import nue_core.data.audio as audio

    path = _write(tmp_path / "long.wav", np.zeros((1000, 2), dtype=np.float32), 8000)
    monkeypatch.setattr(audio, "MAX_SAMPLES", 1999)  # 1000 frames x 2 channels is one too many
    with pytest.raises(AudioError, match=r"long.wav: 2,000 samples are more than nue holds at once"):
        load_audio(path, 8000)
    monkeypatch.setattr(audio, "MAX_SAMPLES", 2000)
    monkeypatch.setattr(audio, "available_memory", lambda: 1000)  # bytes: decoding needs 4 * (2000 + 1000 + 1000)
    with pytest.raises(AudioError, match=r"long.wav: reading 2,000 samples needs 16 KB, more than the available memory"):
        load_audio(path, 8000)
    monkeypatch.setattr(audio, "available_memory", lambda: 16_000)
    assert load_audio(path, 8000).shape == (1000,)
