"""Augmentation settings that cannot work are refused when the config is read, naming the field;
every setting that is accepted augments any clip into finite audio. Noise and impulse responses
from the user's folders: listed once and sorted, drawn from the caller's generator, the SNR in its
range, the direct path kept, files resampled, decoded lazily into a bounded cache."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

import nue_core.data.augment as augment_module
from nue_core.data.audio import AudioError
from nue_core.data.augment import AugmentConfig, add_noise_at_snr, augment, reverberate
from nue_core.errors import ConfigError
from nue_core.train.config import TrainConfig


@pytest.mark.parametrize("augment_settings, field", [
    ({"speed": [0.0]}, "augment.speed"),
    ({"speed": [0.9, -1.0]}, "augment.speed"),
    ({"speed": [1000.0]}, "augment.speed"),
    ({"speed_range": [0.0, 1.1]}, "augment.speed_range"),
    ({"speed_range": [1.1, 0.9]}, "augment.speed_range"),
    ({"gain_db": [3.0, -3.0]}, "augment.gain_db"),
    ({"gain_db": [float("nan"), 1.0]}, "augment.gain_db"),
    ({"noise_snr_db": [5.0, float("inf")]}, "augment.noise_snr_db"),
    ({"noise_snr_db": [-1e300, 0.0]}, "augment.noise_snr_db"),
    ({"noise_prob": 1.5}, "augment.noise_prob"),
    ({"lowpass_prob": -0.1}, "augment.lowpass_prob"),
    ({"prob": float("nan")}, "augment.prob"),
    ({"eq_db": -1.0}, "augment.eq_db"),
    ({"eq_db": 1e4}, "augment.eq_db"),
    ({"lowpass_hz": [0.0, 3000.0]}, "augment.lowpass_hz"),
    ({"lowpass_hz": [3000.0, 1000.0]}, "augment.lowpass_hz"),
])
def test_settings_that_cannot_work_are_refused_naming_the_field(augment_settings, field) -> None:
    with pytest.raises(ConfigError) as refused:
        TrainConfig.from_dict({"augment": augment_settings}, source="nue train settings")
    assert re.search(rf"{re.escape(field)}(\.\d)?: ", str(refused.value)), str(refused.value)


def test_the_documented_examples_are_accepted() -> None:
    TrainConfig.from_dict({"augment": {"speed": [0.9, 1.0, 1.1], "eq_db": 4, "noise_snr_db": [5, 30],
                                       "lowpass_hz": [1200, 3500], "gain_db": [-6, 6]}})
    TrainConfig.from_dict({"augment": {"speed_range": [0.85, 1.15], "noise_snr_db": [-5, 0]}})  # noise louder than speech


def test_augment_config_checks_itself_without_train_config() -> None:
    with pytest.raises(ValueError, match="speed"):
        AugmentConfig(speed=[0.0])


numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**6, 10**6),
                    st.sampled_from([0.0, -0.0, 1e-300, -1.0, 0.5, 1.0, 2.0, 1e300]))
pairs = st.one_of(st.none(), st.tuples(numbers, numbers).map(list))
configs = st.fixed_dictionaries({}, optional={
    "speed": st.lists(numbers, max_size=3), "speed_range": pairs, "gain_db": pairs, "eq_db": st.one_of(st.none(), numbers),
    "noise_snr_db": pairs, "noise_prob": numbers, "lowpass_hz": pairs, "lowpass_prob": numbers, "prob": numbers,
})


@settings(max_examples=300, deadline=None)
@given(config=configs, seed=st.integers(0, 2**32 - 1), seconds=st.floats(0.05, 0.5))
def test_any_accepted_setting_augments_into_finite_audio(config, seed, seconds) -> None:
    """300 generated augment sections (any numbers: zero, negative, huge, NaN, infinite): each is
    refused at config time naming an augment field, or augmenting a clip gives finite audio."""
    try:
        checked = TrainConfig.from_dict({"augment": config}, source="s").augment
    except ConfigError as exc:
        assert "augment." in str(exc), str(exc)
        return
    rng = np.random.default_rng(seed)
    wave = (0.3 * np.sin(np.arange(int(seconds * 16000)) * 0.1)).astype(np.float32)
    out = augment(wave, checked, rng, 16000)
    assert out.ndim == 1 and out.dtype == np.float32 and len(out) > 0 and np.isfinite(out).all()
    assert not math.isnan(float(np.abs(out).max()))


# ---- noise and impulse responses from the user's folders ---------------------------------------

RATE = 16000


def _write(path: Path, samples, rate: int = RATE) -> Path:
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.asarray(samples, dtype=np.float32), rate)
    return path


def _speech(seconds: float = 0.5) -> np.ndarray:
    """A quiet two-tone clip (no clipping after noise or reverberation is added)."""
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.1 * np.sin(2 * np.pi * 300 * t) + 0.05 * np.sin(2 * np.pi * 1700 * t)).astype(np.float32)


def _config(**fields) -> AugmentConfig:
    return TrainConfig.from_dict({"augment": {"prob": 1.0, **fields}}, source="s").augment


@pytest.fixture
def noise_dir(tmp_path):
    folder = tmp_path / "noise"
    rng = np.random.default_rng(7)
    _write(folder / "b" / "babble.wav", rng.normal(0, 0.2, RATE))
    _write(folder / "a.flac", rng.normal(0, 0.05, RATE // 2))
    (folder / "README.txt").write_text("not audio")
    return folder


@pytest.fixture(autouse=True)
def _fresh_file_cache(monkeypatch):
    """Each test decodes its own files (the cache is per process and keyed by path)."""
    monkeypatch.setattr(augment_module, "_FILES", augment_module._FileCache(augment_module.FILE_CACHE_BYTES))


@pytest.mark.parametrize("field", ["noise_dir", "rir_dir"])
def test_missing_or_empty_folders_are_refused_naming_field_and_path(tmp_path, field) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no audio here")
    (tmp_path / "file.wav").write_text("x")
    extra = {"noise_snr_db": [0, 10]}
    for where, why in (("missing", "folder not found"), ("empty", "holds no audio files"), ("file.wav", "not a folder")):
        with pytest.raises(ConfigError) as refused:
            _config(**{field: str(tmp_path / where)}, **extra)
        assert f"augment.{field}: " in str(refused.value) and str(tmp_path / where) in str(refused.value)
        assert why in str(refused.value)


def test_noise_dir_needs_an_snr_range(noise_dir) -> None:
    with pytest.raises(ConfigError, match="noise_dir needs noise_snr_db"):
        _config(noise_dir=str(noise_dir))


def test_folders_are_listed_once_sorted_and_written_back_as_paths(tmp_path, noise_dir) -> None:
    _write(noise_dir / "0_first" / "z.wav", np.ones(100) * 0.1)  # created last, sorts first
    config = _config(noise_dir=str(noise_dir), noise_snr_db=[0, 10])
    names = [p.relative_to(noise_dir).as_posix() for p in config.noise_dir.files]
    assert names == ["0_first/z.wav", "a.flac", "b/babble.wav"]  # README.txt is no audio
    dumped = TrainConfig(augment=config).to_yaml()
    assert f"noise_dir: {noise_dir}" in dumped
    again = TrainConfig.from_dict(yaml.safe_load(dumped), source="train.yaml").augment
    assert again == config


def test_measured_snr_lands_in_the_range(noise_dir) -> None:
    config = _config(noise_dir=str(noise_dir), noise_snr_db=[5.0, 15.0], noise_prob=1.0)
    speech = _speech()
    measured = []
    for seed in range(20):
        out = augment(speech, config, np.random.default_rng(seed), RATE)
        noise = out.astype(np.float64) - speech
        measured.append(20 * np.log10(np.sqrt(np.mean(speech.astype(np.float64) ** 2)) / np.sqrt(np.mean(noise**2))))
    assert all(5.0 - 1e-3 <= snr <= 15.0 + 1e-3 for snr in measured), measured
    assert max(measured) - min(measured) > 4  # drawn across the range, not one value


def test_noise_shorter_than_the_clip_is_looped_from_a_random_offset(tmp_path) -> None:
    period = 997
    noise = np.random.default_rng(3).normal(0, 0.1, period)
    rng = np.random.default_rng(0)
    speech = _speech(0.4)
    out = add_noise_at_snr(speech, noise.astype(np.float32), 10.0, rng)
    added = out.astype(np.float64) - speech
    np.testing.assert_allclose(added[:-period], added[period:], atol=1e-6)  # the excerpt repeats
    start = int(np.random.default_rng(0).integers(period))  # the offset drawn first
    scale = added[0] / noise[start]
    np.testing.assert_allclose(added[:period], scale * np.roll(noise, -start), atol=1e-6)


def test_draws_depend_only_on_the_rng(noise_dir, tmp_path) -> None:
    rirs = tmp_path / "rirs"
    for i in range(3):
        _write(rirs / f"r{i}.wav", np.r_[np.zeros(i * 10), 1.0, 0.3 * np.exp(-np.arange(400) / 80.0)])
    config = _config(noise_dir=str(noise_dir), rir_dir=str(rirs), noise_snr_db=[0, 20], noise_prob=1.0, rir_prob=1.0)
    speech = _speech()
    first = augment(speech, config, np.random.default_rng(11), RATE)
    # A worker process gets the config pickled, with its own (empty) cache: the same draws.
    import pickle

    augment_module._FILES = augment_module._FileCache(augment_module.FILE_CACHE_BYTES)
    again = augment(speech, pickle.loads(pickle.dumps(config)), np.random.default_rng(11), RATE)
    np.testing.assert_array_equal(first, again)
    other = augment(speech, config, np.random.default_rng(12), RATE)
    assert not np.array_equal(first, other)


def test_noise_recorded_at_another_rate_is_resampled(tmp_path) -> None:
    t = np.arange(8000) / 8000
    _write(tmp_path / "n8k" / "tone.wav", 0.2 * np.sin(2 * np.pi * 1000 * t), rate=8000)
    config = _config(noise_dir=str(tmp_path / "n8k"), noise_snr_db=[0, 0], noise_prob=1.0)
    speech = np.full(RATE, 0.1, dtype=np.float32)  # DC: whatever else is in the output is the noise
    out = augment(speech, config, np.random.default_rng(0), RATE)
    spectrum = np.abs(np.fft.rfft(out - out.mean()))
    assert np.fft.rfftfreq(len(out), 1 / RATE)[int(np.argmax(spectrum))] == pytest.approx(1000, abs=2)
    assert len(augment_module._FILES.get(tmp_path / "n8k" / "tone.wav", RATE, "noise_dir")) == RATE


def test_a_delta_impulse_response_gives_back_the_input(tmp_path) -> None:
    _write(tmp_path / "rir" / "delta.wav", np.r_[np.zeros(37), -0.5, np.zeros(200)])  # delayed, inverted, quieter
    config = _config(rir_dir=str(tmp_path / "rir"), rir_prob=1.0)
    speech = _speech()
    np.testing.assert_allclose(augment(speech, config, np.random.default_rng(0), RATE), speech, atol=1e-6)


def test_reverberation_keeps_the_direct_path_level_and_time() -> None:
    rng = np.random.default_rng(5)
    delay, tail = 120, rng.normal(0, 1, 3000) * np.exp(-np.arange(3000) / 400.0)
    rir = np.r_[np.zeros(delay), 2.0, 0.2 * tail].astype(np.float32)  # a decaying-noise room
    speech = rng.normal(0, 0.05, RATE // 2).astype(np.float32)  # broadband: one correlation peak
    out = reverberate(speech, rir)
    assert out.shape == speech.shape and out.dtype == np.float32
    expected = np.convolve(speech.astype(np.float64), rir / 2.0)[delay:delay + len(speech)]
    np.testing.assert_allclose(out, expected, atol=1e-5)
    lags = np.arange(-50, 51)
    corr = [float(np.dot(np.roll(out, -lag), speech)) for lag in lags]
    assert lags[int(np.argmax(corr))] == 0  # the speech did not move
    assert not np.allclose(out, speech, atol=1e-3)  # and the room is heard


def test_numpy_and_scipy_convolutions_agree() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=1001), rng.normal(size=77)
    np.testing.assert_allclose(augment_module._numpy_fftconvolve(a, b), np.convolve(a, b), atol=1e-9)
    signal = pytest.importorskip("scipy.signal")
    np.testing.assert_allclose(signal.fftconvolve(a, b), augment_module._numpy_fftconvolve(a, b), atol=1e-9)


def test_an_unreadable_noise_file_is_an_error_naming_it(tmp_path) -> None:
    (tmp_path / "noise").mkdir()
    (tmp_path / "noise" / "broken.wav").write_bytes(b"RIFF but not really a wave file")
    config = _config(noise_dir=str(tmp_path / "noise"), noise_snr_db=[0, 10], noise_prob=1.0)
    with pytest.raises(AudioError) as failed:
        augment(_speech(), config, np.random.default_rng(0), RATE)
    assert "augment.noise_dir" in str(failed.value) and "broken.wav" in str(failed.value)


def test_a_silent_impulse_response_is_an_error_naming_it(tmp_path) -> None:
    _write(tmp_path / "rir" / "silent.wav", np.zeros(100))
    config = _config(rir_dir=str(tmp_path / "rir"), rir_prob=1.0)
    with pytest.raises(AudioError, match=r"augment\.rir_dir: .*silent\.wav: the impulse response is silent"):
        augment(_speech(), config, np.random.default_rng(0), RATE)


def test_the_file_cache_is_bounded_and_decodes_each_file_once(tmp_path, monkeypatch) -> None:
    paths = [_write(tmp_path / f"n{i}.wav", np.full(1000, 0.1 * (i + 1))) for i in range(3)]
    reads = []
    real = augment_module.load_audio
    monkeypatch.setattr(augment_module, "load_audio", lambda p, r: reads.append(p) or real(p, r))
    cache = augment_module._FileCache(max_bytes=2 * 1000 * 4)  # room for two files
    for path in paths[:2] * 3:
        cache.get(path, RATE, "noise_dir")
    assert reads == paths[:2]  # decoded once each
    cache.get(paths[2], RATE, "noise_dir")  # the least recently used one goes
    assert cache._bytes <= cache.max_bytes and len(cache._items) == 2
    cache.get(paths[0], RATE, "noise_dir")
    assert reads == [*paths[:2], paths[2], paths[0]]
    with pytest.raises(ValueError, match="read-only"):
        cache.get(paths[0], RATE, "noise_dir")[0] = 1.0
