"""`nue transcribe` as a user runs it: folders, bad files named and skipped, formats, data-parallel."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from nue_core.checkpoint import save_model
from nue_core.cli import _register_verbs, app
from nue_core.composer import compose
from tests.conftest import tiny_config

_register_verbs()  # all verbs, as `nue` has them (with one verb typer would drop the verb name)
NUE = [sys.executable, "-c", "from nue_core.cli import main; main()"]


def run_nue(*args):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    return subprocess.run([*NUE, *args], capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    model = compose(tiny_config())
    with torch.no_grad():
        model.decoder.model.get_output_embeddings().weight.mul_(8.0)
    return save_model(model, tmp_path_factory.mktemp("m") / "tiny-model")


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("audio")
    rng = np.random.default_rng(0)
    sf.write(folder / "a.wav", (rng.standard_normal(12000) * 0.1).astype(np.float32), 16000)
    (folder / "sub").mkdir()
    sf.write(folder / "sub" / "b.flac", (rng.standard_normal(6000) * 0.1).astype(np.float32), 8000)
    (folder / "broken.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEnot really audio" * 8)
    (folder / "empty.wav").write_bytes(b"")
    (folder / "readme.txt").write_text("not audio")  # not an audio extension: not collected
    return folder


def test_folder_with_corrupt_and_empty_files(model_dir, audio_dir, tmp_path):
    out = tmp_path / "out.jsonl"
    res = run_nue("transcribe", str(model_dir), str(audio_dir), "--output", str(out), "--max-new-tokens", "4")
    assert res.returncode == 1, res.stderr
    assert str(audio_dir / "broken.wav") in res.stderr and str(audio_dir / "empty.wav") in res.stderr
    assert "2 of 4 input(s) failed" in res.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [os.path.relpath(r["source"], audio_dir) for r in rows] == ["a.wav", "broken.wav", "empty.wav", "sub/b.flac"]
    good = {os.path.basename(r["source"]): r for r in rows if r["error"] is None}
    assert set(good) == {"a.wav", "b.flac"} and good["b.flac"]["seconds"] == pytest.approx(0.75)


def test_manifest_formats_and_options(model_dir, audio_dir, tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"id": "utt1", "audio": str(audio_dir / "a.wav")}) + "\n")
    runner = CliRunner()
    tsv = tmp_path / "out.tsv"
    args = ["transcribe", str(model_dir), "--manifest", str(manifest), str(audio_dir / "sub"), "-o", str(tsv),
            "--batch-size", "1", "--num-beams", "2", "--dtype", "bfloat16", "--max-new-tokens", "3"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    lines = tsv.read_text().splitlines()
    assert [line.split("\t")[0] for line in lines] == ["utt1", str(audio_dir / "sub" / "b.flac")]
    res = runner.invoke(app, ["transcribe", str(model_dir), str(audio_dir / "a.wav"), "--format", "text",
                              "--max-new-tokens", "3"])
    assert res.exit_code == 0 and len(res.stdout.splitlines()) == 1


def test_nothing_to_transcribe_and_bad_options(model_dir, tmp_path):
    res = run_nue("transcribe", str(model_dir), str(tmp_path))
    assert res.returncode == 2 and "nothing to transcribe" in res.stderr
    res = CliRunner().invoke(app, ["transcribe", str(model_dir), str(tmp_path), "--dtype", "int8"])
    assert res.exit_code != 0 and "unknown --dtype" in str(res.exception)
    res = CliRunner().invoke(app, ["transcribe", str(model_dir), str(tmp_path), "--ctc-weight", "1.5"])
    assert res.exit_code != 0 and "--ctc-weight 1.5: must be between 0 and 1" in str(res.exception)


def test_ctc_weight_needs_a_ctc_head_and_changes_nothing_else(model_dir, audio_dir, tmp_path):
    wav = str(audio_dir / "a.wav")
    res = run_nue("transcribe", str(model_dir), wav, "--ctc-weight", "0.5")  # conv bridge without CTC head
    assert res.returncode == 2 and "has no CTC head" in res.stderr
    torch.manual_seed(1)
    model = compose(tiny_config(bridge="ctc-compress"))
    folder = save_model(model, tmp_path / "ctc-model")
    plain = run_nue("transcribe", str(folder), wav, "--format", "tsv")
    joint = run_nue("transcribe", str(folder), wav, "--format", "tsv", "--ctc-weight", "0.5")
    assert plain.returncode == 0 and joint.returncode == 0, plain.stderr + joint.stderr
    assert joint.stdout.split("\t")[0] == plain.stdout.split("\t")[0] == wav


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("torchrun") is None and shutil.which("nue") is None, reason="torchrun/nue not on PATH")
def test_data_parallel_two_cpu_processes_match_single(model_dir, audio_dir, tmp_path):
    nue = shutil.which("nue") or os.path.join(os.path.dirname(sys.executable), "nue")
    single, dual = tmp_path / "single.jsonl", tmp_path / "dual.jsonl"
    good = [str(audio_dir / "a.wav"), str(audio_dir / "sub" / "b.flac"), str(audio_dir / "a.wav")]
    common = ["transcribe", str(model_dir), *good, "--max-new-tokens", "6"]
    assert run_nue(*common, "-o", str(single)).returncode == 0
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           "--no-python", nue, *common, "-o", str(dual)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    texts = lambda p: [(json.loads(x)["source"], json.loads(x)["text"]) for x in p.read_text().splitlines()]
    assert texts(dual) == texts(single)
    assert not list(tmp_path.glob("dual.jsonl.part-*"))  # parts merged and removed


def test_embedded_default_transcribes_its_examples():
    """README's main job after install: `nue transcribe default` (no download, real speech)."""
    import os
    import subprocess
    import sys

    digits = {"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"}
    res = subprocess.run([sys.executable, "-c", "from nue_core.cli import main; main()", "transcribe", "default"],
                         capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300)
    assert res.returncode == 0, res.stderr
    lines = [line.split("\t") for line in res.stdout.strip().splitlines()]
    assert len(lines) == 3 and all(path.endswith(".wav") for path, _ in lines)
    assert all(text.split() and set(text.split()) <= digits for _, text in lines)


def test_json_output_is_one_document(model_dir, audio_dir, tmp_path):
    out = tmp_path / "out.json"
    good = [str(audio_dir / "a.wav"), str(audio_dir / "sub" / "b.flac")]
    res = CliRunner().invoke(app, ["transcribe", str(model_dir), *good, "-o", str(out), "--max-new-tokens", "3"])
    assert res.exit_code == 0, res.output
    records = json.loads(out.read_text())  # json.load, not line by line
    assert [r["source"] for r in records] == good and [r["index"] for r in records] == [0, 1]
