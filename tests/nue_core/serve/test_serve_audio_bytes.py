"""``read_audio_bytes``: uploads decoded from memory, limits checked, clear errors."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from nue_core.data.audio import AudioError, AudioTooLong, load_audio, read_audio_bytes
from tests.nue_core.serve.conftest import EXAMPLES


def test_bytes_decode_as_the_file_does() -> None:
    path = EXAMPLES[0]
    assert np.array_equal(read_audio_bytes(path.read_bytes(), 16000), load_audio(path, 16000))


def test_other_rates_and_formats_are_resampled() -> None:
    buf = io.BytesIO()
    sf.write(buf, np.zeros(8000, dtype=np.float32) + 0.1, 8000, format="FLAC")
    assert read_audio_bytes(buf.getvalue(), 16000).shape == (16000,)


@pytest.mark.parametrize("data", [b"", b"not audio at all" * 10], ids=["empty", "garbage"])
def test_undecodable_bytes_name_the_upload(data: bytes) -> None:
    with pytest.raises(AudioError, match="clip.wav"):
        read_audio_bytes(data, 16000, source="clip.wav")


def test_duration_limit_from_the_header() -> None:
    with pytest.raises(AudioTooLong, match="more than this server takes"):
        read_audio_bytes(EXAMPLES[0].read_bytes(), 16000, max_seconds=0.1)
