"""Length-bucketed batches: bounded padded seconds, every item once, seeded and resumable order."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nue_core.data.augment import AugmentConfig, add_noise, apply_gain, augment, low_pass, random_eq, speed_perturb
from nue_core.data.batching import make_batches, pad_waveforms, shard_batches
from nue_core.errors import ConfigError


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0.1, 10.0), min_size=1, max_size=60), st.floats(5.0, 40.0), st.integers(0, 5))
def test_batches_respect_bound_and_cover_everything(durations: list[float], limit: float, seed: int) -> None:
    batches = make_batches(durations, limit, seed=seed, epoch=0)
    assert sorted(i for b in batches for i in b) == list(range(len(durations)))
    for batch in batches:
        padded = len(batch) * max(durations[i] for i in batch)
        assert padded <= limit or len(batch) == 1  # a clip longer than the bound goes alone


def test_order_is_seeded_and_changes_by_epoch() -> None:
    durations = list(np.random.default_rng(0).uniform(0.5, 4.0, 200))
    first = make_batches(durations, 12.0, seed=3, epoch=0)
    assert first == make_batches(durations, 12.0, seed=3, epoch=0)
    assert first != make_batches(durations, 12.0, seed=3, epoch=1)
    assert first != make_batches(durations, 12.0, seed=4, epoch=0)


def test_resuming_from_a_position_continues_the_same_sequence() -> None:
    durations = list(np.random.default_rng(1).uniform(0.5, 4.0, 100))
    full = [b for epoch in range(2) for b in make_batches(durations, 10.0, seed=0, epoch=epoch)]
    per_epoch = len(make_batches(durations, 10.0, seed=0, epoch=0))
    position = per_epoch - 3  # "interrupted" near the end of epoch 0
    resumed = make_batches(durations, 10.0, seed=0, epoch=0)[position:] + make_batches(durations, 10.0, seed=0, epoch=1)
    assert resumed == full[position:]


def test_buckets_group_similar_lengths() -> None:
    durations = list(np.random.default_rng(2).uniform(0.5, 8.0, 300))
    batches = make_batches(durations, 30.0, seed=0, epoch=0)
    spread = np.mean([max(durations[i] for i in b) - min(durations[i] for i in b) for b in batches])
    assert spread < 1.0


def test_sharding_gives_equal_disjoint_shares() -> None:
    batches = [[i] for i in range(7)]
    shares = [shard_batches(batches, rank, 2) for rank in range(2)]
    assert len(shares[0]) == len(shares[1]) == 3
    assert not set(map(tuple, shares[0])) & set(map(tuple, shares[1]))
    with pytest.raises(ConfigError, match="lower batch_seconds"):
        shard_batches([[0]], 0, 2)


def test_padding_and_augmentation_shapes() -> None:
    waves, lengths = pad_waveforms([np.ones(5, np.float32), np.ones(3, np.float32)])
    assert waves.shape == (2, 5) and lengths.tolist() == [5, 3] and float(waves[1, 3:].abs().sum()) == 0.0
    wave = np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32)
    assert abs(len(speed_perturb(wave, 1.1, 16000)) - 16000 / 1.1) < 2
    assert np.allclose(apply_gain(wave, 6.0), np.clip(wave * 10 ** 0.3, -1, 1), atol=1e-6)
    config = AugmentConfig(speed=[0.9, 1.1], gain_db=(-3.0, 3.0))
    a = augment(wave, config, np.random.default_rng(5), 16000)
    b = augment(wave, config, np.random.default_rng(5), 16000)
    assert np.array_equal(a, b) and len(a) != len(wave)


def _band_energy(wave: np.ndarray, low: int, high: int) -> float:
    spectrum = np.abs(np.fft.rfft(wave)) ** 2
    return float(spectrum[low:high].sum())


def test_random_eq_colours_the_spectrum_and_keeps_the_level() -> None:
    wave = np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32)
    outs = [random_eq(wave, 6.0, np.random.default_rng(seed)) for seed in range(8)]
    for out in outs:
        assert out.shape == wave.shape and out.dtype == np.float32
        assert np.isclose(np.sqrt(np.mean(out**2)), np.sqrt(np.mean(wave**2)), rtol=1e-3)
    # White noise has equal energy low and high; the random responses tilt it, differently each time.
    tilts = [_band_energy(o, 0, 2000) / _band_energy(o, 6000, 8001) for o in outs]
    assert max(tilts) / min(tilts) > 2.0
    assert np.array_equal(random_eq(wave, 0.0, np.random.default_rng(0)), wave)


def test_add_noise_hits_the_requested_snr() -> None:
    wave = np.sin(np.arange(32000) * 0.05).astype(np.float32) * 0.3
    for snr in (0.0, 10.0, 30.0):
        noisy = add_noise(wave, snr, np.random.default_rng(1))
        noise = noisy - wave
        measured = 10 * np.log10(np.mean(wave**2) / np.mean(noise**2))
        assert abs(measured - snr) < 0.3
    assert np.array_equal(add_noise(np.zeros(10, np.float32), 10.0, np.random.default_rng(0)), np.zeros(10))


def test_eq_and_noise_augmentation_is_seeded() -> None:
    wave = np.random.default_rng(0).normal(0, 0.1, 8000).astype(np.float32)
    config = AugmentConfig(eq_db=4.0, noise_snr_db=(5.0, 20.0), noise_prob=1.0)
    assert config.enabled
    a = augment(wave, config, np.random.default_rng(5), 16000)
    assert np.array_equal(a, augment(wave, config, np.random.default_rng(5), 16000))
    assert not np.array_equal(a, augment(wave, config, np.random.default_rng(6), 16000))
    assert len(a) == len(wave)


def test_inverted_noise_bounds_are_rejected() -> None:
    from nue_core.train.config import TrainConfig

    with pytest.raises(ConfigError, match="noise_snr_db"):
        TrainConfig.from_dict({"augment": {"noise_snr_db": [20, 5]}})


def test_low_pass_removes_the_band_above_the_cutoff() -> None:
    wave = np.random.default_rng(2).normal(0, 0.1, 16000).astype(np.float32)
    out = low_pass(wave, 2000.0, 16000)
    assert out.shape == wave.shape and out.dtype == np.float32
    assert _band_energy(out, 2400, 8001) < 1e-6 * _band_energy(wave, 2400, 8001)
    assert np.isclose(_band_energy(out, 0, 1900), _band_energy(wave, 0, 1900), rtol=1e-3)
    config = AugmentConfig(lowpass_hz=(1000.0, 3000.0), lowpass_prob=1.0)
    assert config.enabled
    assert np.array_equal(augment(wave, config, np.random.default_rng(3), 16000),
                          augment(wave, config, np.random.default_rng(3), 16000))


def test_grouped_batches_keep_windows_apart_and_streams_in_order() -> None:
    from nue_core.data.batching import shard_windows

    rng = np.random.default_rng(0)
    streams = [0] * 40 + [1] * 25 + [None] * 10 + [2] * 30
    durations = rng.uniform(0.5, 4.0, len(streams)).tolist()
    groups = shard_windows(streams, 8)
    assert groups[:9] == [(0, 0)] * 8 + [(0, 1)] and groups[65:75] == [(-1, 0)] * 10
    for epoch in range(3):
        batches = make_batches(durations, 6.0, seed=5, epoch=epoch, groups=groups)
        assert batches == make_batches(durations, 6.0, seed=5, epoch=epoch, groups=groups), "a pure function"
        assert sorted(i for b in batches for i in b) == list(range(len(streams)))
        keys = [groups[b[0]] for b in batches]
        assert all(len({groups[i] for i in b}) == 1 and b == sorted(b) for b in batches)
        assert all(max(durations[i] for i in b) * len(b) <= 6.0 or len(b) == 1 for b in batches)
        runs = [k[0] for n, k in enumerate(keys) if n == 0 or keys[n - 1][0] != k[0]]
        assert sorted(runs) == [-1, 0, 1, 2], "each stream once, contiguous"
        for stream in (0, 1, 2):
            windows = [w for s, w in keys if s == stream]
            assert windows == sorted(windows), "front to back"
    assert make_batches(durations, 6.0, 5, 0, groups=groups) != make_batches(durations, 6.0, 5, 1, groups=groups)
