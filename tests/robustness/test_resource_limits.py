"""Resource limits: an out-of-memory batch is halved and retried (with a logged warning), and
one failing item never fails the rest of its batch."""

import torch

from nue_core.generation import GenerationConfig
from nue_core.inference import Transcriber
from tests.nue_core.test_transcribe import SR, _noise, model  # noqa: F401  (module-scoped fixture)


def test_out_of_memory_halves_the_batch(model, monkeypatch):
    import nue_core.inference.engine as engine

    real = engine.prefill
    sizes = []

    def small_memory(model, waveforms, cfg, rows_per_item):
        sizes.append(len(waveforms))
        if len(waveforms) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(model, waveforms, cfg, rows_per_item)

    monkeypatch.setattr(engine, "prefill", small_memory)
    tr = Transcriber(model, batch_size=8, generation=GenerationConfig(max_new_tokens=3))
    results = tr.transcribe([_noise(0.3 + 0.05 * i, i) for i in range(7)])
    assert all(r.ok for r in results) and tr.batch_size == 2
    assert sizes[:2] == [7, 4] and max(sizes[2:]) == 2  # 7 fails, half (4) fails, then 2 at a time
    assert sum(sizes[2:]) == 7  # each clip decoded once at the size that fits


def test_a_failing_item_does_not_fail_its_batch(model, monkeypatch):
    import nue_core.inference.engine as engine

    real = engine.prefill
    bad_length = int(0.55 * SR)

    def flaky(model, waveforms, cfg, rows_per_item):
        if bad_length in [len(w) for w in waveforms]:
            raise ValueError("boom")
        return real(model, waveforms, cfg, rows_per_item)

    monkeypatch.setattr(engine, "prefill", flaky)
    clips = [_noise(0.3, 1), _noise(0.55, 2), _noise(0.4, 3)]
    results = Transcriber(model, batch_size=3, generation=GenerationConfig(max_new_tokens=3)).transcribe(clips)
    assert [r.ok for r in results] == [True, False, True]
    assert "ValueError: boom" in results[1].error and "<array 1>" in results[1].error


# ---------------------------------------------------------------- every size bounded before it is allocated
# A regression here allocates without end, so each probe runs in a child process under an
# address-space cap (RLIMIT_AS) and a timeout: it fails the test, never the machine.

import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import textwrap  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
CAP_BYTES = 4 * 2**30  # torch + transformers map ~1 GiB of address space; the rest is the probe's


def run_capped(code: str, timeout: float = 120, cap: int = CAP_BYTES,
               cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``code`` in a child Python under RLIMIT_AS = ``cap`` and a timeout (offline, one thread).

    The child's last stdout line is the probe's JSON result; a timeout is a failure, not a hang.
    """
    preamble = f"import resource\nresource.setrlimit(resource.RLIMIT_AS, ({cap}, {cap}))\n"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    try:
        return subprocess.run([sys.executable, "-c", preamble + textwrap.dedent(code)], capture_output=True,
                              text=True, env=env, cwd=cwd or REPO, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"probe ran past {timeout} s (a size not bounded before allocation?):\n{code}")


def last_json(res: subprocess.CompletedProcess) -> object:
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_a_million_layers_are_refused_from_the_api_and_the_cli():
    res = run_capped("""
        import json, sys
        from nue_core.cli import main
        from nue_core.composer import compose
        from nue_core.errors import NueError
        from tests.conftest import tiny_config
        out = []
        for describe in (True, False):
            cfg = tiny_config()
            cfg["decoder"]["config"]["num_hidden_layers"] = 1_000_000
            try:
                compose(cfg, describe=describe)
                out.append("built")
            except NueError as exc:
                out.append(str(exc))
        sys.argv = ["nue", "compose", "--preset", "tiny", "--set", "decoder.config.num_hidden_layers=1000000"]
        try:
            main()
        except SystemExit as exc:
            out.append(exc.code)
        print(json.dumps(out))
    """, timeout=90)
    api_describe, api_build, cli_status = last_json(res)
    for message in (api_describe, api_build):
        assert "decoder.config.num_hidden_layers" in message and "1,000,000" in message, message
    assert cli_status not in (0, None)
    assert "decoder.config.num_hidden_layers" in res.stderr and "Traceback" not in res.stderr


def test_a_model_that_cannot_fit_is_refused_with_its_estimate():
    res = run_capped("""
        import json
        from nue_core.composer import compose
        from nue_core.errors import NueError
        from tests.conftest import tiny_config
        out = []
        wide = tiny_config()  # 64 layers of width 16384, ffn 65536: at least 1.5e11 parameters
        wide["decoder"]["config"].update(num_hidden_layers=64, hidden_size=16384, intermediate_size=65536,
                                         num_attention_heads=128)
        odd = tiny_config()  # no well-known field says it: only the meta build sees a 1e8-tap conv
        odd["encoder"]["config"]["num_conv_pos_embeddings"] = 10**8
        for cfg in (wide, odd):
            try:
                compose(cfg)
                out.append("built")
            except NueError as exc:
                out.append(str(exc))
        print(json.dumps(out))
    """)
    wide, odd = last_json(res)
    assert re.match(r"decoder.config: ~1.5e\+11 parameters \(618 GB in float32\) exceeds the available memory "
                    r"\([0-9.]+ GB\)", wide), wide
    assert "encoder" in odd and "parameters" in odd and "available memory" in odd, odd


def test_a_model_folder_claiming_a_million_layers_is_refused(tmp_path):
    res = run_capped(f"""
        import json, yaml
        from nue_core.checkpoint import load, save_model
        from nue_core.composer import compose
        from nue_core.errors import NueError
        from tests.conftest import tiny_config
        folder = {str(tmp_path / "model")!r}
        save_model(compose(tiny_config()), folder)
        path = folder + "/nue.yaml"
        data = yaml.safe_load(open(path).read())
        data["decoder"]["config"]["num_hidden_layers"] = 1_000_000
        open(path, "w").write(yaml.safe_dump(data))
        try:
            load(folder)
            print(json.dumps("loaded"))
        except NueError as exc:
            print(json.dumps(str(exc)))
    """, timeout=90)
    message = last_json(res)
    assert "decoder.config.num_hidden_layers" in message and "1,000,000" in message, message


NAMES = "abcdefghi"  # 9 levels of 9 aliases each: 9^9 (387 million) values once expanded
BOMB_ITEMS = [f"a: &a [{', '.join(['x'] * 9)}]"] + [
    f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]" for p, n in zip(NAMES, NAMES[1:])]


def test_yaml_alias_bombs_and_deep_nesting_are_refused_in_files_and_in_set(tmp_path):
    """A billion laughs inside a model folder's nue.yaml (where it once expanded in the composer),
    a train config and a ``--set`` value, and 5,000-deep nesting: each is a one-line error within
    seconds, under the memory cap."""
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "nue.yaml").write_text(
        "encoder: hubert\nbridge: conv\ndecoder:\n  name: gpt-neox\n  tokenizer: byte\n  config:\n"
        + "".join(f"    {item}\n" for item in BOMB_ITEMS))
    (tmp_path / "train.yaml").write_text("".join(f"{item}\n" for item in BOMB_ITEMS))
    flow = "{" + ", ".join(BOMB_ITEMS) + "}"
    deep = "[" * 5000 + "]" * 5000
    res = run_capped(f"""
        import json
        from nue_core.checkpoint import load
        from nue_core.errors import NueError
        from nue_core.overrides import parse_override
        from nue_core.train.config import TrainConfig
        out = []
        for probe in (lambda: load({str(tmp_path / "model")!r}), lambda: TrainConfig.load({str(tmp_path / "train.yaml")!r}),
                      lambda: parse_override("decoder.config=" + {flow!r}), lambda: parse_override("x.y=" + {deep!r})):
            try:
                probe()
                out.append("accepted")
            except NueError as exc:
                out.append(str(exc))
        print(json.dumps(out))
    """, timeout=90)
    folder, train, set_bomb, set_deep = last_json(res)
    assert "nue.yaml" in folder and "aliases" in folder, folder
    assert "train.yaml" in train and "aliases" in train, train
    assert "aliases" in set_bomb and "decoder.config=" in set_bomb, set_bomb
    assert "nested more than" in set_deep, set_deep


def test_static_batches_for_a_decoder_that_cannot_join_caches(model, monkeypatch):
    """A decoder without join_caches/trim_cache (a third-party one) is decoded in static batches
    with SpeechLM.generate: same transcripts, and the same out-of-memory halving."""
    import nue_core.inference.transcriber as transcriber

    clips = [_noise(0.3 + 0.05 * i, i) for i in range(7)]
    cfg = GenerationConfig(max_new_tokens=3)
    on_engine = [r.text for r in Transcriber(model, batch_size=8, generation=cfg).transcribe(clips)]
    monkeypatch.setattr(transcriber, "supports_joining", lambda decoder: False)
    real, sizes = model.generate, []

    def small_memory(waves, lengths, config=None):
        sizes.append(waves.shape[0])
        if waves.shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(waves, lengths, config)

    monkeypatch.setattr(model, "generate", small_memory)
    tr = Transcriber(model, batch_size=8, generation=cfg)
    results = tr.transcribe(clips)
    assert [r.text for r in results] == on_engine and all(r.ok for r in results)
    assert tr.batch_size == 2 and sizes == [7, 4, 2, 2, 2, 1]  # 7 fails, half (4) fails, then 2 at a time
