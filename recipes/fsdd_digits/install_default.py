"""Copy a trained recipe model into ``nue_core/default_model`` (the model ``load("default")`` reads).

Weights are stored as float16 (half the size; they are loaded into float32 parameters), and a few
held-out-speaker recordings go to ``examples/`` with the dataset's attribution.

    python recipes/fsdd_digits/install_default.py MODEL_DIR TEST_MANIFEST [RESULTS_JSON]
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FSDD_COMMIT = "26eb9aaf76e81b692f806f9140c2d2777410d7a1"

ATTRIBUTION = """# Example recordings

Connected-digit clips built by `recipes/fsdd_digits` from the Free Spoken Digit Dataset (FSDD),
Zohar Jackson et al., https://github.com/Jakobovski/free-spoken-digit-dataset (commit
{commit}), licensed CC BY-SA 4.0 (https://creativecommons.org/licenses/by-sa/4.0/).
Changes: recordings of speaker `{speaker}` concatenated with short pauses and resampled from
8 kHz to 16 kHz. These clips are shared under the same licence. The speaker was held out of
training (the default model never heard this voice).

| file | transcript |
|---|---|
{rows}
"""

MODEL_README = """# nue-asr embedded default model

A tiny English connected-digit recogniser ("zero" ... "nine"), trained from scratch on CPU by
`python recipes/fsdd_digits/run.py --install-default` on three FSDD speakers (plus synthetic
eSpeak NG voices). It exists so that
`nue transcribe` works right after install, with no download; it knows only the ten digit words.

- Architecture: see `nue.yaml` (log-mel + 4-layer Transformer encoder trained from scratch,
  CTC-compress bridge: one prompt vector per recognised word, 2-layer GPT-NeoX, word-level
  sentencepiece vocabulary; decoded with joint CTC/decoder scoring, `decode.ctc_weight`
  {ctc_weight}); {params:.2f}M parameters, stored as float16 (loaded into float32).
- Held-out speaker `{speaker}` ({items} utterances of 1-5 digits): WER {wer:.2%}, CER {cer:.2%}.
  Other voices differ widely: `recipes/fsdd_digits/README.md` holds each speaker out in turn.
- Training data: Free Spoken Digit Dataset, Zohar Jackson et al., CC BY-SA 4.0 (commit {commit}).
- Example recordings: `examples/` (see its README for attribution).
"""


def _write_weights_fp16(src: Path, dst: Path) -> int:
    from nue_core.checkpoint import read_state_dict, save_state_dict

    state = read_state_dict(src)
    half = {k: (v.half() if v.is_floating_point() else v) for k, v in state.items()}
    save_state_dict(half, dst)
    return sum(v.numel() for v in state.values())


def _pick_examples(manifest: Path, count: int = 3) -> list[dict]:
    """A 1-, 3- and 5-digit clip when there are some (short ones keep the package small)."""
    entries = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines() if line.strip()]
    picked = []
    for words in (1, 3, 5):
        match = next((e for e in entries if len(e["text"].split()) == words and e not in picked), None)
        if match is not None:
            picked.append(match)
    return picked[:count]


def install(model_dir: Path, test_manifest: Path, target: Path, results: dict) -> Path:
    """Write ``target`` (atomically): nue.yaml, model.safetensors (fp16), tokenizer/, examples/, README.md."""
    from nue_core.atomic import atomic_folder

    with atomic_folder(target) as tmp:
        _write_package(tmp, model_dir, test_manifest, results)
    print(f"installed the default model in {target}")
    return target


def _write_package(tmp: Path, model_dir: Path, test_manifest: Path, results: dict) -> None:
    """The default model's files, written into the (temporary) folder ``tmp``."""
    shutil.copyfile(model_dir / "nue.yaml", tmp / "nue.yaml")
    if (model_dir / "tokenizer").is_dir():
        shutil.copytree(model_dir / "tokenizer", tmp / "tokenizer")
    params = _write_weights_fp16(model_dir / "model.safetensors", tmp / "model.safetensors")
    examples = tmp / "examples"
    examples.mkdir()
    rows = []
    for entry in _pick_examples(test_manifest):
        name = "digits_" + entry["text"].replace(" ", "_") + ".wav"
        shutil.copyfile(test_manifest.parent / entry["audio"], examples / name)
        rows.append(f"| {name} | {entry['text']} |")
    speaker = results.get("test_speaker", "?")
    (examples / "README.md").write_text(
        ATTRIBUTION.format(commit=FSDD_COMMIT, speaker=speaker, rows="\n".join(rows)), encoding="utf-8")
    from nue_core.config import read_yaml_mapping

    config = read_yaml_mapping(model_dir / "nue.yaml", "config", "a model config")
    ctc_weight = (config.get("decode") or {}).get("ctc_weight", 0.0)
    (tmp / "README.md").write_text(MODEL_README.format(
        ctc_weight=ctc_weight, params=params / 1e6, speaker=speaker, items=results.get("items", 0), wer=results.get("wer", float("nan")),
        cer=results.get("cer", float("nan")), commit=FSDD_COMMIT), encoding="utf-8")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    extra = json.loads(Path(sys.argv[3]).read_text(encoding="utf-8")) if len(sys.argv) > 3 else {}
    install(Path(sys.argv[1]), Path(sys.argv[2]), REPO / "nue_core" / "default_model", extra)
