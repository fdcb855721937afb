"""Extra training voices: the ten digit words spoken by eSpeak NG voices, FSDD-style.

Three real training speakers are too few for a model to learn what a digit sounds like apart
from who says it. eSpeak NG (a formant synthesiser, ``apt install espeak-ng``) offers English
accents x voice variants, and each voice here also gets its own pitch and speaking rate: hundreds of
different (if robotic) voices. They are used only for training; validation and test stay real.

Files are written like FSDD's (``{digit}_{voice}_{take}.wav``, mono 8 kHz 16-bit, trimmed), so
``data.list_recordings`` reads them and utterances are composed from them the same way.
"""

from __future__ import annotations

import io
import random
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc", "en-gb-x-gbclan",
           "en-gb-x-gbcwmd")
DONE = ".complete"  # written last: a folder without it is rebuilt


class SynthesizerMissing(RuntimeError):
    """espeak-ng is not installed."""


def espeak() -> str:
    """Path of the espeak-ng program, or a SynthesizerMissing error that says what to do."""
    found = shutil.which("espeak-ng")
    if found is None:
        raise SynthesizerMissing(
            "espeak-ng not found: the recipe adds synthetic training voices with it. Install it "
            "(Debian/Ubuntu: apt install espeak-ng; macOS: brew install espeak-ng) or run with "
            "--synthetic-count 0 (real voices only; expect a much higher held-out-speaker WER)"
        )
    return found


def voice_variants(program: str) -> list[str]:
    """Names of eSpeak NG's voice variants (``+m3``, ``+klatt``, ...), sorted."""
    listing = subprocess.run([program, "--voices=variant"], capture_output=True, text=True, check=True).stdout
    names = {line.split()[4].rsplit("/", 1)[-1] for line in listing.splitlines()[1:] if len(line.split()) >= 5}
    return sorted(names)


def trim(wave: np.ndarray, rate: int, threshold: float = 0.01, margin_ms: float = 5.0) -> np.ndarray:
    """Cut leading and trailing silence (below ``threshold`` x peak), keeping a small margin."""
    loud = np.nonzero(np.abs(wave) > threshold * max(float(np.abs(wave).max()), 1e-9))[0]
    if len(loud) == 0:
        return wave
    margin = int(rate * margin_ms / 1000)
    return wave[max(loud[0] - margin, 0) : loud[-1] + margin + 1]


def speak(program: str, voice: str, pitch: int, rate: int, text: str, sample_rate: int) -> np.ndarray:
    """``text`` spoken by ``voice`` as a trimmed mono float32 clip at ``sample_rate``."""
    import soundfile as sf
    import soxr

    done = subprocess.run([program, "-v", voice, "-p", str(pitch), "-s", str(rate), "--stdout", text],
                          capture_output=True, check=True)
    wave, source_rate = sf.read(io.BytesIO(done.stdout), dtype="float32")
    wave = soxr.resample(wave, source_rate, sample_rate, quality="HQ") if source_rate != sample_rate else wave
    return trim(np.asarray(wave, dtype=np.float32), sample_rate)


def synthesize_voices(folder: Path, words: list[str], sample_rate: int, voices: int | None = None,
                      seed: int = 0, workers: int = 4) -> Path:
    """Write every digit word for ``voices`` synthetic voices (all accent x variant pairs if None).

    Each voice draws its pitch (20-80) and rate (130-200 words/min) from ``seed``. Returns
    ``folder``, which holds FSDD-named files; an already complete folder is reused.
    """
    folder = Path(folder)
    if (folder / DONE).is_file():
        return folder
    program = espeak()
    import soundfile as sf

    rng = random.Random(seed)
    pairs = [(accent, variant) for accent in ACCENTS for variant in voice_variants(program)]
    if voices is not None:
        pairs = rng.sample(pairs, min(voices, len(pairs)))
    folder.mkdir(parents=True, exist_ok=True)
    jobs = []
    for accent, variant in pairs:
        pitch, rate = rng.randint(20, 80), rng.randint(130, 200)
        # FSDD names split on "_": keep them out of the voice name.
        name = f"{accent}+{variant}-p{pitch}-s{rate}".replace("_", "-")
        for digit, word in enumerate(words):
            jobs.append((f"{accent}+{variant}", pitch, rate, word, folder / f"{digit}_{name}_0.wav"))

    def write(job: tuple[str, int, int, str, Path]) -> None:
        voice, pitch, rate, word, path = job
        sf.write(str(path), speak(program, voice, pitch, rate, word, sample_rate), sample_rate, subtype="PCM_16")

    with ThreadPoolExecutor(workers) as pool:  # the work is in espeak-ng processes, not Python
        list(pool.map(write, jobs))
    (folder / DONE).write_text(f"{len(pairs)} voices\n", encoding="utf-8")
    return folder
