"""Augmentation settings that cannot work are refused when the config is read, naming the field;
every setting that is accepted augments any clip into finite audio."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nue_core.data.augment import AugmentConfig, augment
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
