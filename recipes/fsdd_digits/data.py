"""Connected-digit utterances built from the Free Spoken Digit Dataset (FSDD), split by speaker.

Each utterance is 1-5 recordings of one speaker joined with short silences, resampled from 8 kHz
to 16 kHz, with the transcript of its digits as words ("three seven one"). The test speaker is
never heard in training; validation uses held-out recordings of the training speakers.
Training can add utterances of synthetic eSpeak NG voices (``synthetic.py``), built the same way;
validation and test stay real. Data is built once per work folder (delete ``data/`` to rebuild).
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
SPEAKERS = ("jackson", "nicolas", "theo", "yweweler")
SOURCE_RATE, RATE = 8000, 16000


def default_fsdd() -> Path:
    """``$NUE_FSDD``, else ``../shared/data/fsdd`` beside the repository root."""
    if os.environ.get("NUE_FSDD"):
        return Path(os.environ["NUE_FSDD"])
    return Path(__file__).resolve().parents[2].parent / "shared" / "data" / "fsdd"


@dataclass(frozen=True)
class Recording:
    path: Path
    digit: int
    speaker: str
    index: int


def list_recordings(fsdd: Path) -> list[Recording]:
    """Every ``{digit}_{speaker}_{index}.wav`` under ``fsdd/recordings``."""
    folder = Path(fsdd) / "recordings"
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: FSDD recordings not found; pass --fsdd or set NUE_FSDD")
    found = []
    for path in sorted(folder.glob("*.wav")):
        digit, speaker, index = path.stem.split("_")
        found.append(Recording(path, int(digit), speaker, int(index)))
    return found


def split_recordings(recordings: list[Recording], test_speaker: str, valid_from: int = 45) -> dict[str, list[Recording]]:
    """train / valid (training speakers' recordings with index >= valid_from) / test (held-out speaker)."""
    if test_speaker not in {r.speaker for r in recordings}:
        raise ValueError(f"test speaker '{test_speaker}' has no recordings")
    splits: dict[str, list[Recording]] = defaultdict(list)
    for r in recordings:
        if r.speaker == test_speaker:
            splits["test"].append(r)
        else:
            splits["valid" if r.index >= valid_from else "train"].append(r)
    return dict(splits)


def read_8k(path: Path) -> np.ndarray:
    import soundfile as sf

    wave, rate = sf.read(str(path), dtype="float32")
    if rate != SOURCE_RATE or wave.ndim != 1:
        raise ValueError(f"{path}: expected mono {SOURCE_RATE} Hz, got {rate} Hz shape {wave.shape}")
    return wave


def compose_utterance(parts: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Join 8 kHz clips with 50-250 ms pauses (and 50-200 ms at the ends), resample to 16 kHz."""
    import soxr

    def pause(low: float, high: float) -> np.ndarray:
        # A faint noise floor rather than digital zeros, like the recordings' own background.
        return rng.normal(0.0, 1e-4, int(rng.uniform(low, high) * SOURCE_RATE)).astype(np.float32)

    pieces = [pause(0.05, 0.2)]
    for k, part in enumerate(parts):
        pieces += [part] + ([pause(0.05, 0.25)] if k < len(parts) - 1 else [])
    pieces.append(pause(0.05, 0.2))
    wave = soxr.resample(np.concatenate(pieces), SOURCE_RATE, RATE, quality="HQ")
    return np.clip(wave, -1.0, 1.0).astype(np.float32)


def build_split(
    recordings: list[Recording], count: int, folder: Path, seed: int, max_digits: int = 5
) -> Path:
    """Write ``count`` utterances of 1..max_digits digits (one speaker each) and a JSONL manifest."""
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    by_speaker: dict[str, list[Recording]] = defaultdict(list)
    for r in recordings:
        by_speaker[r.speaker].append(r)
    speakers = sorted(by_speaker)
    cache: dict[Path, np.ndarray] = {}
    lines = []
    for i in range(count):
        speaker = speakers[i % len(speakers)]
        pool = by_speaker[speaker]
        chosen = [pool[j] for j in rng.choice(len(pool), size=int(rng.integers(1, max_digits + 1)))]
        parts = [cache.setdefault(r.path, read_8k(r.path)) for r in chosen]
        name = f"{speaker}_{i:05d}.wav"
        sf.write(str(folder / name), compose_utterance(parts, rng), RATE, subtype="PCM_16")
        text = " ".join(WORDS[r.digit] for r in chosen)
        lines.append(json.dumps({"id": name[:-4], "audio": name, "text": text, "speaker": speaker}))
    manifest = folder / "manifest.jsonl"
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return manifest


def train_tokenizer(folder: Path) -> Path:
    """A word-level sentencepiece model over the ten digit words (+ <unk> <s> </s> <pad>)."""
    import io

    import sentencepiece as spm

    folder.mkdir(parents=True, exist_ok=True)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(WORDS * 10 + [" ".join(WORDS)]), model_writer=model, model_type="word",
        vocab_size=len(WORDS) + 4, unk_id=0, bos_id=1, eos_id=2, pad_id=3, hard_vocab_limit=False,
        normalization_rule_name="identity", minloglevel=2,  # identity: no 240 KB NFKC table in the file
    )
    path = folder / "spiece.model"
    path.write_bytes(model.getvalue())
    return path


def build_all(fsdd: Path, work: Path, test_speaker: str, counts: dict[str, int], seed: int = 0,
              synthetic: int = 0, voices: int | None = None) -> dict[str, Path]:
    """Manifests for train / valid / test under ``work/data`` (rebuilt only when missing).

    With ``synthetic`` > 0, that many utterances of eSpeak NG voices (``synthetic.py``) are built
    in ``data/synthetic`` and the returned train manifest (``data/train+synthetic.jsonl``) lists
    both the real training utterances and those.
    """
    splits = split_recordings(list_recordings(fsdd), test_speaker)
    manifests = {}
    for k, (name, count) in enumerate(counts.items()):
        folder = Path(work) / "data" / name
        manifest = folder / "manifest.jsonl"
        if not manifest.is_file():
            build_split(splits[name], count, folder, seed=seed * 100 + k)
        manifests[name] = manifest
    if synthetic > 0 and "train" in manifests:
        from synthetic import synthesize_voices

        folder = Path(work) / "data" / "synthetic"
        manifest = folder / "manifest.jsonl"
        if not manifest.is_file():
            voice_dir = synthesize_voices(Path(work) / "data" / "voices" / "recordings", WORDS, SOURCE_RATE, voices,
                                          seed=seed)
            build_split(list_recordings(voice_dir.parent), synthetic, folder, seed=seed * 100 + 99)
        manifests["train"] = combine_manifests([manifests["train"], manifest], Path(work) / "data" / "train+synthetic.jsonl")
    return manifests


def combine_manifests(parts: list[Path], out: Path) -> Path:
    """One JSONL manifest listing every entry of ``parts``, audio paths made relative to ``out``."""
    lines = []
    for part in parts:
        prefix = Path(os.path.relpath(part.parent, out.parent))
        for line in part.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                row["audio"] = (prefix / row["audio"]).as_posix()
                lines.append(json.dumps(row))
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out
