"""Property tests over generated audio: every input gives a transcript or a clear error naming it.

Empty, one-sample, silent, clipped, NaN/Inf samples, 8-48 kHz, mono to 6 channels, int16/int32/
float, long clips, truncated headers and random bytes with a .wav name. None crashes the process
or the batch it is in.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nue_core.composer import compose
from nue_core.data.audio import AudioError, load_audio
from nue_core.inference import Transcriber
from tests.conftest import tiny_config

RATES = [8000, 16000, 22050, 44100, 48000]
SUBTYPES = {"int16": "PCM_16", "int32": "PCM_32", "float": "FLOAT"}
PROPS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def transcriber():
    torch.manual_seed(0)
    model = compose(tiny_config()).eval()
    return Transcriber(model, batch_size=4)


@st.composite
def waveforms(draw):
    kind = draw(st.sampled_from(["noise", "silent", "clipped", "one-sample", "nan", "inf", "tone"]))
    rate = draw(st.sampled_from(RATES))
    channels = draw(st.sampled_from([1, 2, 6]))
    seconds = draw(st.floats(0.05, 1.5))
    n = 1 if kind == "one-sample" else max(1, int(seconds * rate))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    data = rng.normal(0, 0.1, (n, channels)).astype(np.float32)
    if kind == "silent":
        data[:] = 0
    elif kind == "clipped":
        data = np.clip(data * 50, -1, 1)
    elif kind == "tone":
        data[:, 0] = 0.5 * np.sin(2 * np.pi * 440 * np.arange(n) / rate)
    elif kind in ("nan", "inf"):
        data[n // 2, 0] = np.nan if kind == "nan" else np.inf
    return kind, rate, data, draw(st.sampled_from(list(SUBTYPES)))


def _write(folder: Path, index: int, rate: int, data: np.ndarray, subtype: str) -> Path:
    path = folder / f"clip{index}.wav"
    sf.write(str(path), data, rate, subtype=SUBTYPES[subtype])
    return path


@PROPS
@given(st.lists(waveforms(), min_size=1, max_size=4))
def test_generated_files_transcribe_or_fail_by_name(transcriber, tmp_path_factory, clips):
    folder = tmp_path_factory.mktemp("audio")
    paths = [_write(folder, i, rate, data, sub) for i, (_, rate, data, sub) in enumerate(clips)]
    results = transcriber.transcribe(paths)
    assert [r.source for r in results] == [str(p) for p in paths]
    for (kind, rate, data, subtype), path, result in zip(clips, paths, results):
        if result.error is not None:
            assert path.name in result.error
        else:
            assert isinstance(result.text, str)
        if kind == "nan" and subtype == "float":
            assert result.error is not None and "NaN" in result.error


@PROPS
@given(st.binary(min_size=0, max_size=400), st.integers(0, 60))
def test_random_bytes_and_truncated_headers_are_named_errors(tmp_path_factory, junk, cut):
    folder = tmp_path_factory.mktemp("bad")
    good = io.BytesIO()
    sf.write(good, np.zeros(1600, dtype=np.float32), 16000, format="WAV")
    truncated = folder / "truncated.wav"
    truncated.write_bytes(good.getvalue()[:cut])
    random_bytes = folder / "random.wav"
    random_bytes.write_bytes(junk)
    for path in (truncated, random_bytes):
        try:
            load_audio(path, 16000)
        except AudioError as exc:
            assert path.name in str(exc)


def test_bad_files_do_not_fail_their_batch(transcriber, tmp_path):
    good = [_write(tmp_path, i, 16000, np.random.default_rng(i).normal(0, 0.1, (8000, 1)).astype(np.float32), "float")
            for i in range(3)]
    empty = tmp_path / "empty.wav"
    sf.write(str(empty), np.zeros((0, 1), dtype=np.float32), 16000)
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not audio at all")
    results = transcriber.transcribe([good[0], empty, good[1], junk, good[2]])
    assert [r.ok for r in results] == [True, False, True, False, True]
    assert "empty.wav" in results[1].error and "junk.wav" in results[3].error


def test_very_long_clip_is_chunked_not_truncated(transcriber):
    long = (np.random.default_rng(0).normal(0, 0.1, 16000 * 40).astype(np.float32), 16000)
    (result,) = transcriber.transcribe([long])
    assert result.ok and result.chunks >= 3 and result.seconds == pytest.approx(40.0)


# ---------------------------------------------------------------- headers that lie: every size bounded
# A header can claim any rate and any length; what it claims is refused before anything is
# allocated. These run in a child under a memory cap (``run_capped``): before the bounds, a 1 Hz
# header ended the process in std::bad_alloc while resampling.

import json  # noqa: E402
import struct  # noqa: E402

from tests.robustness.test_resource_limits import last_json, run_capped  # noqa: E402

HEADER_CASES = 60


def wav_header(rate: int, channels: int, data_bytes: int) -> bytes:
    """A 16-bit PCM RIFF/WAVE header claiming ``rate`` and ``data_bytes`` of samples."""
    fmt = struct.pack("<HHIIHH", 1, channels, rate, (rate * channels * 2) % 2**32, channels * 2, 16)
    riff_size = min(4 + 8 + len(fmt) + 8 + data_bytes, 2**32 - 1)
    return b"RIFF" + struct.pack("<I", riff_size) + b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + \
        b"data" + struct.pack("<I", data_bytes)


def write_lying_wav(path: Path, rate: int, channels: int, claimed_frames: int, real_frames: int) -> Path:
    """A wav whose header claims ``claimed_frames``; the file is sparse up to that size, so
    libsndfile believes it (a short file would make it shrink the claim to what is there)."""
    data_bytes = min(claimed_frames * channels * 2, 2**32 - 64)
    samples = (np.random.default_rng(0).normal(0, 3000, real_frames * channels)).astype("<i2").tobytes()
    with open(path, "wb") as handle:
        handle.write(wav_header(rate, channels, data_bytes) + samples)
        handle.truncate(44 + data_bytes)
    return path


def header_property(folder: str) -> None:
    """Child side of ``test_generated_wav_headers_are_bounded`` (prints a JSON summary)."""
    from hypothesis import HealthCheck, given, settings

    from nue_core.data.audio import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE

    seen = {"read": 0, "refused": 0}
    rates = st.one_of(st.integers(0, MIN_SAMPLE_RATE - 1), st.integers(MIN_SAMPLE_RATE, MAX_SAMPLE_RATE),
                      st.integers(MAX_SAMPLE_RATE + 1, 2**32 - 1), st.sampled_from([1, 8000, 16000, 44100]))
    # small files, or claims of 2^29+ samples (refused); nothing in between, which would take seconds
    frames = st.one_of(st.integers(1, 4000), st.integers(2**29, 2**31))

    @settings(max_examples=HEADER_CASES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(rate=rates, channels=st.integers(1, 8), claimed=frames, real=st.integers(0, 4000))
    def prop(rate: int, channels: int, claimed: int, real: int) -> None:
        path = Path(folder) / f"r{rate}-c{channels}-f{claimed}.wav"
        write_lying_wav(path, rate, channels, claimed, min(real, claimed))
        try:
            audio = load_audio(path, 16000)
        except AudioError as exc:
            seen["refused"] += 1
            assert path.name in str(exc), str(exc)
            if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE and "sample rate" in str(exc):
                assert f"{rate} Hz" in str(exc)
            return
        finally:
            path.unlink()
        seen["read"] += 1
        assert MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE, rate
        assert audio.dtype == np.float32 and audio.ndim == 1 and audio.size <= 2**30

    prop()
    print(json.dumps(seen))


def test_generated_wav_headers_are_bounded(tmp_path):
    """60 generated 16-bit wav headers: rates 0 Hz..4.3 GHz, 1-8 channels, claims of a few frames
    or of 2^29-2^31 (sparse files that libsndfile believes): each is read or refused by name
    (out-of-range rates naming the rate), in the child under the 4 GiB cap."""
    seen = last_json(run_capped(f"from tests.robustness.test_audio_inputs import header_property as p; p({str(tmp_path)!r})",
                                timeout=300))
    assert seen["refused"] > 0


def test_lying_headers_fail_alone_in_their_batch(tmp_path):
    """A 1 Hz header (a 16,000-fold upsampling) and a header claiming 2^31 frames, between good
    files: those two are per-file errors naming the file (and the rate); the rest transcribe."""
    good = [_write(tmp_path, i, 16000, np.random.default_rng(i).normal(0, 0.1, (8000, 1)).astype(np.float32), "int16")
            for i in range(3)]
    one_hz = tmp_path / "one_hz.wav"
    sf.write(str(one_hz), np.random.default_rng(9).normal(0, 0.1, 200_000).astype(np.float32), 1, subtype="PCM_16")
    huge = write_lying_wav(tmp_path / "huge.wav", 16000, 1, 2**31 - 64, 1600)
    paths = [str(p) for p in (good[0], one_hz, good[1], huge, good[2])]
    res = run_capped(f"""
        import json, torch
        from nue_core.composer import compose
        from nue_core.inference import Transcriber
        from tests.conftest import tiny_config
        torch.manual_seed(0)
        results = Transcriber(compose(tiny_config()).eval(), batch_size=4).transcribe({paths!r})
        print(json.dumps([[r.ok, r.error] for r in results]))
    """)
    results = last_json(res)
    assert [ok for ok, _ in results] == [True, False, True, False, True]
    assert "one_hz.wav" in results[1][1] and "sample rate 1 Hz" in results[1][1]
    assert "huge.wav" in results[3][1] and "samples" in results[3][1]
