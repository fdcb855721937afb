"""Manifests of other tools (NeMo, lhotse, HF datasets) and webdataset tar shards give the same
batches, and train to the same weights, as the equivalent native JSONL manifest; bad lines name
file:line (or shard:key, folder[row]) and the field."""

from __future__ import annotations

import io
import json
import multiprocessing
import pickle
import tarfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from nue_core.data.audio import load_audio
from nue_core.data.batching import make_batches
from nue_core.data.entry_audio import read_entry_audio
from nue_core.data.manifest import ManifestError, manifest_paths, scan_manifest, scan_manifests
from nue_core.data.manifest_base import TarMember
from nue_core.data.manifest_tar import expand_braces, scan_tar_shards
from nue_core.train.config import TrainConfig
from nue_core.train.run import build_training_model, load_data
from nue_core.train.trainer import Trainer
from tests.nue_core.train.conftest import make_dataset, write_model_yaml

RATE = 16000
MODEL = SimpleNamespace(sample_rate=RATE, config=SimpleNamespace(max_audio_seconds=16.0))  # what load_data reads


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, list[dict]]:
    """(folder, rows): 8 tone clips with a native JSONL manifest (``native.jsonl``: ids u1_0 ...)."""
    folder = tmp_path_factory.mktemp("corpus")
    manifest = make_dataset(folder / "audio", 8, seed=1)
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    for row in rows:
        row["path"] = folder / "audio" / row["audio"]
    return folder, rows


def _native(folder: Path, rows: list[dict], ids: list[str]) -> Path:
    path = folder / f"native-{abs(hash(tuple(ids)))}.jsonl"
    path.write_text("".join(json.dumps({"audio": str(r["path"]), "text": r["text"], "id": i}) + "\n"
                            for r, i in zip(rows, ids)), encoding="utf-8")
    return path


def _nemo(folder: Path, rows: list[dict]) -> tuple[Path, list[str]]:
    import soundfile as sf

    sub = folder / "nemo"
    sub.mkdir(exist_ok=True)
    path = sub / "train_manifest.json"
    lines = [{"audio_filepath": f"../audio/{r['audio']}", "duration": sf.info(str(r["path"])).duration,
              "text": r["text"], "lang": "en", "pnc": "no"} for r in rows]  # extra keys: ignored as NeMo does
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path, [f"{path}:{n}" for n in range(1, len(rows) + 1)]


def _lhotse(folder: Path, rows: list[dict]) -> tuple[Path, list[str]]:
    lhotse = pytest.importorskip("lhotse")
    cuts = []
    for r in rows:
        rec = lhotse.Recording.from_file(str(r["path"]), recording_id=r["id"])
        sup = lhotse.SupervisionSegment(id=r["id"], recording_id=r["id"], start=0, duration=rec.duration, text=r["text"])
        cuts.append(lhotse.MonoCut(id=r["id"], start=0, duration=rec.duration, channel=0, recording=rec, supervisions=[sup]))
    path = folder / "cuts.jsonl.gz"
    lhotse.CutSet.from_cuts(cuts).to_file(path)
    return path, [r["id"] for r in rows]


def _hf(folder: Path, rows: list[dict]) -> tuple[Path, list[str]]:
    datasets = pytest.importorskip("datasets")
    table = {"audio": [{"bytes": r["path"].read_bytes(), "path": r["audio"]} for r in rows],
             "sentence": [r["text"] for r in rows], "id": [r["id"] for r in rows]}
    path = folder / "hf"
    datasets.Dataset.from_dict(table).cast_column("audio", datasets.Audio()).save_to_disk(str(path))
    return path, [r["id"] for r in rows]


def _tar(folder: Path, rows: list[dict]) -> tuple[Path, list[str]]:
    """Two shards; one sample's transcript in KEY.json, the others in KEY.txt."""
    shards = folder / "shards"
    shards.mkdir(exist_ok=True)
    for shard, part in enumerate((rows[:5], rows[5:])):
        with tarfile.open(shards / f"train-{shard:03d}.tar", "w") as tar:
            for k, r in enumerate(part):
                tar.add(str(r["path"]), arcname=f"{r['id']}.wav")
                meta = json.dumps({"text": r["text"], "lang": "en"}) if k == 1 else r["text"] + "\n"
                _add(tar, f"{r['id']}.{'json' if k == 1 else 'txt'}", meta.encode())
    return Path(f"{shards}/train-{{000..001}}.tar"), [r["id"] for r in rows]


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


BUILDERS = {"nemo": _nemo, "lhotse": _lhotse, "hf-datasets": _hf, "tar": _tar}


def _batches(data) -> list:  # type: ignore[no-untyped-def]
    order = make_batches(data.durations, batch_seconds=2.0, seed=3, epoch=0)
    return [data.batch(indices) for indices in order]


@pytest.mark.parametrize("kind", list(BUILDERS))
def test_same_batches_as_the_native_manifest(corpus, kind: str) -> None:
    folder, rows = corpus
    manifest, ids = BUILDERS[kind](folder, rows)
    config = TrainConfig()
    theirs, _ = load_data(config, MODEL, str(manifest), None, say=lambda *a: None)
    ours, _ = load_data(config, MODEL, _native(folder, rows, ids), None, say=lambda *a: None)
    assert [e.id for e in theirs.entries] == ids and theirs.durations == ours.durations
    for a, b in zip(_batches(theirs), _batches(ours), strict=True):
        assert a.ids == b.ids and a.texts == b.texts
        assert torch.equal(a.waveforms, b.waveforms) and torch.equal(a.lengths, b.lengths)


@pytest.mark.slow
def test_training_on_each_format_gives_the_native_weights(corpus, tmp_path: Path) -> None:
    folder, rows = corpus
    model_yaml = write_model_yaml(tmp_path / "model.yaml")
    # shard_window 0: tar shards bucketed across the whole set, as the native manifest is
    config = TrainConfig(max_steps=2, batch_seconds=2.0, warmup_steps=1, eval_every=100, save_every=100,
                         progress=False, tensorboard=False, shard_window=0)

    def weights(manifest) -> dict:  # type: ignore[no-untyped-def]
        model = build_training_model(model_yaml, seed=0)
        data, _ = load_data(config, model, manifest, None, say=lambda *a: None)
        Trainer(model, config, data, None, tmp_path / f"run{len(list(tmp_path.iterdir()))}").fit()
        return {k: v.clone() for k, v in model.state_dict().items()}

    for kind, build in BUILDERS.items():
        if kind in ("lhotse", "hf-datasets") and not _installed(kind):
            continue
        manifest, ids = build(folder, rows)
        native = weights(_native(folder, rows, ids))
        trained = weights(str(manifest))
        assert all(torch.equal(native[k], trained[k]) for k in native), kind


def _installed(kind: str) -> bool:
    import importlib.util

    return importlib.util.find_spec({"lhotse": "lhotse", "hf-datasets": "datasets"}[kind]) is not None


def test_several_manifests_are_one_set_and_ids_stay_unique(corpus) -> None:
    folder, rows = corpus
    nemo, nemo_ids = _nemo(folder, rows[:3])
    tar, tar_ids = _tar(folder, rows)
    both, _ = load_data(TrainConfig(), MODEL, [str(nemo), str(tar)], None, say=lambda *a: None)
    assert [e.id for e in both.entries] == nemo_ids + tar_ids
    assert manifest_paths(f"{nemo},{tar}") == [str(nemo), str(tar)]  # a comma list; braces keep their commas
    again = scan_manifests([_native(folder, rows[:2], ["a", "b"]), _native(folder, rows[2:3], ["b"])])
    assert [e.id for e in again.entries] == ["a", "b"]
    assert len(again.problems) == 1 and "duplicate id 'b' (first at " in again.problems[0].message


def test_nemo_offset_reads_the_clip_and_bad_lines_name_the_field(tmp_path: Path, corpus) -> None:
    _, rows = corpus
    path = tmp_path / "m.json"
    lines = [{"audio_filepath": str(rows[0]["path"]), "offset": 0.1, "duration": 0.2, "text": "low"},
             {"audio_filepath": "", "duration": 1.0, "text": "x"},
             {"audio_filepath": "a.wav", "duration": -1, "text": "x"},
             {"audio_filepath": "a.wav", "duration": 1.0, "text_filepath": "a.txt"},
             {"audio_filepath": "a.wav", "duration": 1.0, "normalized_text": "from normalized", "speaker": 7}]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n", encoding="utf-8")
    read = scan_manifest(path)
    first, last = read.entries
    assert (first.start, first.end) == (0.1, pytest.approx(0.3)) and last.text == "from normalized"
    assert last.speaker == "7" and last.audio == tmp_path / "a.wav"  # relative to the manifest's folder
    whole = load_audio(rows[0]["path"], RATE)
    assert np.array_equal(read_entry_audio(first, RATE), whole[1600:4800])
    tail = " (NeMo manifest, recognised by line 1's keys)"
    assert [str(p) for p in read.problems] == [
        f"{path}:2: 'audio_filepath' must be a non-empty string path{tail}",
        f"{path}:3: 'duration' must be a finite, non-negative number of seconds{tail}",
        f"{path}:4: 'text_filepath' is not supported; put the transcript in 'text'{tail}"]


def test_lhotse_lines_nue_cannot_read_are_named(tmp_path: Path, corpus) -> None:
    lhotse = pytest.importorskip("lhotse")
    _, rows = corpus
    rec = lhotse.Recording.from_file(str(rows[0]["path"]), recording_id="r")
    sup = lhotse.SupervisionSegment(id="s", recording_id="r", start=0, duration=0.2, text="low", speaker="ann")
    good = lhotse.MonoCut(id="c1", start=0.1, duration=0.2, channel=0, recording=rec, supervisions=[sup])
    two = lhotse.MonoCut(id="c2", start=0, duration=0.2, channel=0, recording=rec, supervisions=[sup, sup])
    none = lhotse.MonoCut(id="c3", start=0, duration=0.2, channel=0, recording=rec, supervisions=[])
    lines = [json.dumps(c.to_dict()) for c in (good, two, none)] + ['{"type": "MonoCut", "id": 5}', "not json"]
    path = tmp_path / "cuts.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    read = scan_manifest(path)
    (entry,) = read.entries
    assert (entry.id, entry.text, entry.speaker, entry.start, entry.end) == ("c1", "low", "ann", 0.1, pytest.approx(0.3))
    assert np.array_equal(read_entry_audio(entry, RATE), load_audio(rows[0]["path"], RATE)[1600:4800])
    messages = [str(p) for p in read.problems]
    assert messages[0].startswith(f"{path}:2: 'supervisions': expected exactly one supervision, found 2 (lhotse CutSet")
    assert messages[1].startswith(f"{path}:3: 'supervisions': expected exactly one supervision, found 0")
    assert messages[2].startswith(f"{path}:4: not a lhotse cut lhotse can read")
    assert messages[3].startswith(f"{path}:5: not valid JSON")


def test_hf_rows_are_read_lazily_by_path_or_bytes_and_bad_rows_are_named(tmp_path: Path, corpus) -> None:
    datasets = pytest.importorskip("datasets")
    _, rows = corpus
    table = {"audio": [{"bytes": None, "path": str(rows[0]["path"])},  # a row naming a file
                       {"bytes": rows[1]["path"].read_bytes(), "path": None},
                       {"bytes": rows[2]["path"].read_bytes(), "path": None}],
             "text": ["low", "mid", "high"], "id": ["a", "b", "a"]}
    path = tmp_path / "ds"
    datasets.Dataset.from_dict(table).cast_column("audio", datasets.Audio()).save_to_disk(str(path))
    read = scan_manifest(path)
    assert [e.id for e in read.entries] == ["a", "b"]
    assert [str(p) for p in read.problems] == [f"{path}[2]: duplicate id 'a'"]
    for entry, row in zip(read.entries, rows):
        assert np.array_equal(read_entry_audio(entry, RATE), load_audio(row["path"], RATE))
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(table)}).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(ManifestError, match=r"a DatasetDict \(splits: train\); give one split's folder"):
        scan_manifest(tmp_path / "dd")


def test_entries_are_picklable_and_read_in_a_fresh_process(corpus) -> None:
    folder, rows = corpus
    entries = scan_manifest(_tar(folder, rows)[0]).entries[:2]
    if _installed("hf-datasets"):
        entries += scan_manifest(_hf(folder, rows)[0]).entries[:2]
    assert pickle.loads(pickle.dumps(entries)) == entries
    with multiprocessing.get_context("spawn").Pool(1) as pool:  # no dataset opened there yet
        waves = pool.starmap(read_entry_audio, [(e, RATE) for e in entries])
    for wave, entry in zip(waves, entries):
        assert np.array_equal(wave, read_entry_audio(entry, RATE))


def test_tar_index_walk_and_its_problems(tmp_path: Path, corpus) -> None:
    _, rows = corpus
    shard = tmp_path / "s.tar"
    wav = rows[0]["path"].read_bytes()
    with tarfile.open(shard, "w") as tar:
        for name, data in [("ok.wav", wav), ("ok.txt", b"low\n"), ("notext.flac", wav),
                           ("two.wav", wav), ("two.flac", wav), ("two.txt", b"x"),
                           ("split.wav", wav), ("gap.txt", b"y"), ("split.txt", b"z"),
                           ("badjson.wav", wav), ("badjson.json", b"{"), ("dup.wav", wav), ("dup.txt", b"a")]:
            _add(tar, name, data)
    other = tmp_path / "t.tar"
    with tarfile.open(other, "w") as tar:
        _add(tar, "dup.wav", wav)
        _add(tar, "dup.txt", b"b")
    read = scan_tar_shards([shard, other])  # one set of shards: keys are unique across them
    assert [e.id for e in read.entries] == ["ok", "dup"]
    ok = read.entries[0]
    assert isinstance(ok.container, TarMember) and ok.container.size == len(wav) and ok.text == "low"
    assert np.array_equal(read_entry_audio(ok, RATE), load_audio(rows[0]["path"], RATE))
    messages = {str(p) for p in read.problems}
    assert f"{shard}:notext: no transcript: expected notext.txt, or a 'text' in notext.json" in messages
    assert any(m.startswith(f"{shard}:two: several audio members (wav, flac)") for m in messages)
    assert f"{shard}:split.txt: members of 'split' are not adjacent; a webdataset tar keeps one sample's " \
           "members together" in messages
    assert any(m.startswith(f"{shard}:badjson: badjson.json: not valid JSON") for m in messages)
    assert f"{other}:dup: duplicate id 'dup' (first in {shard})" in messages
    gz = tmp_path / "c.tar.gz"
    with tarfile.open(gz, "w:gz") as tar:
        _add(tar, "a.txt", b"a")
    with pytest.raises(ManifestError, match="compressed tar"):
        scan_manifest(gz.rename(tmp_path / "c.tar"))


def test_brace_lists_and_a_missing_shard() -> None:
    assert expand_braces("s-{08..11}.tar") == ["s-08.tar", "s-09.tar", "s-10.tar", "s-11.tar"]
    assert expand_braces("{a,b{c,d}}/x.tar") == ["a/x.tar", "bc/x.tar", "bd/x.tar"]
    with pytest.raises(ManifestError, match="unmatched"):
        expand_braces("s-{0..2.tar")
    with pytest.raises(ManifestError, match="2 of 2 shards not found"):
        scan_manifest("/nonexistent/s-{0..1}.tar")


def test_gzipped_native_manifest_and_a_damaged_gzip(tmp_path: Path, corpus) -> None:
    import gzip

    _, rows = corpus
    path = tmp_path / "m.jsonl.gz"
    path.write_bytes(gzip.compress(json.dumps({"audio": str(rows[0]["path"]), "text": "low"}).encode() + b"\n"))
    assert [e.text for e in scan_manifest(path).entries] == ["low"]
    path.write_bytes(path.read_bytes()[:-12])  # truncated stream
    with pytest.raises(ManifestError, match="cannot read"):
        scan_manifest(path)


def test_check_audio_none_opens_no_file_with_a_duration(tmp_path: Path, corpus) -> None:
    _, rows = corpus
    path = tmp_path / "m.jsonl"
    lines = [{"audio": "gone.wav", "text": "low", "duration": 0.5},   # not opened: found when read in training
             {"audio": "gone.wav", "text": "low", "duration": 20.0, "id": "long"},
             {"audio": str(rows[0]["path"]), "text": "low", "id": "measured"}]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n", encoding="utf-8")
    data, _ = load_data(TrainConfig(check_audio="none", skip_bad=True), MODEL, path, None, say=lambda *a: None)
    assert [e.id for e in data.entries] == [f"{path}:1", "measured"]
    assert data.entries[1].duration == pytest.approx(load_audio(rows[0]["path"], RATE).size / RATE)
    with pytest.raises(Exception, match="audio file not found"):
        data.audio(0)
    quick_skip = load_data(TrainConfig(skip_bad=True), MODEL, path, None, say=lambda *a: None)[0]
    assert [e.id for e in quick_skip.entries] == ["measured"]


@pytest.mark.parametrize("kind", list(BUILDERS))
def test_evaluation_reads_each_format_as_training_does(corpus, kind: str) -> None:
    """`nue evaluate` / `transcribe` take manifest entries through the same reader as training."""
    from nue_core.inference.sources import load_input

    if kind in ("lhotse", "hf-datasets") and not _installed(kind):
        pytest.skip(f"{kind} is an optional extra")
    folder, rows = corpus
    manifest, _ = BUILDERS[kind](folder, rows)
    for entry in scan_manifest(manifest).entries:
        assert np.array_equal(load_input(entry, RATE, str(entry.audio)), read_entry_audio(entry, RATE))


def test_tar_shards_are_read_front_to_back_a_window_at_a_time(corpus, tmp_path: Path) -> None:
    """With ``shard_window``, a batch holds samples of one window of one shard, listed in shard
    order; each shard's windows come front to back and shards do not interleave; training runs."""
    folder, rows = corpus
    manifest, _ = _tar(folder, rows)
    config = TrainConfig(max_steps=2, batch_seconds=2.0, warmup_steps=1, eval_every=100, save_every=100,
                         progress=False, tensorboard=False, shard_window=2, num_workers=0)
    model = build_training_model(write_model_yaml(tmp_path / "model.yaml"), seed=0)
    data, _ = load_data(config, model, str(manifest), None, say=lambda *a: None)
    trainer = Trainer(model, config, data, None, tmp_path / "run")
    streams = data.shard_streams()
    assert streams == [0] * 5 + [1] * 3
    position = {i: i - streams.index(streams[i]) for i in range(len(streams))}  # place within its shard
    for epoch in range(3):
        batches = trainer._epoch_batches(epoch)
        assert sorted(i for b in batches for i in b) == list(range(8))
        visits = []
        for batch in batches:
            assert batch == sorted(batch) and len({streams[i] for i in batch}) == 1
            assert len({position[i] // 2 for i in batch}) == 1
            visits.append((streams[batch[0]], position[batch[0]] // 2))
        shards = [s for k, (s, _) in enumerate(visits) if k == 0 or visits[k - 1][0] != s]
        assert sorted(shards) == [0, 1], "each shard is visited once per epoch"
        assert visits == sorted(visits, key=lambda v: shards.index(v[0])) and all(
            a <= b for (sa, a), (sb, b) in zip(visits, visits[1:]) if sa == sb), "windows front to back"
    assert trainer.fit().status == "finished"
