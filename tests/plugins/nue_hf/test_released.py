"""The released Nue-ASR layout: load, same transcripts as the released code by default, export, LoRA."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from nue_core.checkpoint import load, save_adapter, save_model
from nue_core.cli import _register_verbs, app
from nue_core.config import DecodeSpec, LoraSpec
from nue_core.errors import CheckpointError, ConfigError
from nue_core.generation import GenerationConfig, is_looping
from nue_core.inference import transcribe
from nue_core.trainability import merge_adapters, reconfigure
from nue_hf.released import load_released
from nue_hf.released_export import export_released
from nue_hf.tokenizers import SentencePieceTokenizer
from tests.conftest import make_audio
from tests.plugins.nue_hf.released_fixture import make_released_folder

_register_verbs()  # all verbs, as `nue` has them
SECONDS = [0.8, 0.5, 1.1]
# Clip lengths for the looping folder: max_new_tokens from 23 to 44, so loops of one or two tokens
# reach 12 repeats (12 or 24 tokens) well before the limit in most clips.
LOOP_SECONDS = [0.8, 1.1, 2.2, 3.0, 3.6, 4.2, 5.0, 6.1]
# token -> the token the looping folder's head is pulled towards after it: 13 46 13 46 ...,
# 32 50 32 50 ..., 49 49 ...
LOOPS = {13: 46, 46: 13, 32: 50, 50: 32, 49: 49}


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    return make_released_folder(tmp_path_factory.mktemp("rel") / "nue-asr")


@pytest.fixture(scope="module")
def looping(tmp_path_factory):
    """A released folder whose greedy output falls into loops of one or two tokens, as an
    undertrained or out-of-domain model's does. How soon depends on the audio; the released code
    has no guard, so a loop runs to max_new_tokens."""
    folder = make_released_folder(tmp_path_factory.mktemp("loop") / "nue-asr")
    path = folder / "model.safetensors"
    state = load_file(str(path))
    embed, head = state["llm.gpt_neox.embed_in.weight"].float(), state["llm.embed_out.weight"].float()
    for token, successor in LOOPS.items():
        # Mild (0.4): the audio still decides the first tokens and whether and when a loop starts.
        head[successor] += 0.4 * embed[token] / embed[token].norm()
    state["llm.embed_out.weight"] = head.half()
    save_file(state, str(path))
    return folder


def _reference_parts(folder):
    """The released code's model, rebuilt from the folder with transformers alone (not nue's
    loader): HubertModel, GPTNeoXForCausalLM (fp16 weights -> fp32, as the released code on CPU),
    the bridge tensors and the tokenizer."""
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, HubertConfig, HubertModel

    raw = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    state = {k: v.float() for k, v in load_file(str(folder / "model.safetensors")).items()}
    hubert = HubertModel(HubertConfig(**raw["audio_encoder_config"])).eval()
    hubert.load_state_dict({k.removeprefix("audio_encoder."): v for k, v in state.items() if k.startswith("audio_encoder.")})
    llm = GPTNeoXForCausalLM(GPTNeoXConfig(**raw["llm_config"])).eval()
    llm_state = {k.removeprefix("llm."): v for k, v in state.items() if k.startswith("llm.")}
    llm_state["lm_head.weight"] = llm_state.pop("embed_out.weight")  # transformers 4.x name in the file
    llm.load_state_dict(llm_state)
    bridge = {k: v for k, v in state.items() if k.startswith("bridge_")}
    return hubert, llm, bridge, SentencePieceTokenizer(folder)


def _reference_prompt(parts, wave):
    """<s> + bridge(hubert(raw audio)) + [SEP], batch 1, no attention mask: the reference steps."""
    hubert, llm, bridge, tok = parts
    with torch.no_grad():
        x = hubert(wave[None]).last_hidden_state.transpose(1, 2)  # (1, d, t)
        for i in range(2):
            x = F.gelu(F.conv1d(x, bridge[f"bridge_convs.{i}.weight"], bridge[f"bridge_convs.{i}.bias"], stride=2))
        speech = F.linear(x.transpose(1, 2), bridge["bridge_proj.weight"], bridge["bridge_proj.bias"])
        embed = llm.get_input_embeddings()
        pre = embed(torch.tensor([tok.encode("<s>")]))
        post = embed(torch.tensor([tok.encode("[SEP]")]))
        return torch.cat([pre, speech, post], dim=1)


def _reference_greedy(parts, wave):
    hubert, llm, bridge, tok = parts
    prompt = _reference_prompt(parts, wave)
    max_new = int(4 * (len(wave) / 16000) + 20 + 0.5)
    out: list[int] = []
    with torch.no_grad():
        for step in range(max_new):
            ids = torch.tensor([out], dtype=torch.long)
            embeds = torch.cat([prompt, llm.get_input_embeddings()(ids)], dim=1)
            logits = llm(inputs_embeds=embeds).logits[0, -1]
            if step < 2:
                logits[tok.eos_id] = float("-inf")
            token = int(logits.argmax())
            if token == tok.eos_id:
                break
            out.append(token)
    return out


def _released_generate(parts, wave):
    """What the released code's ``transcribe`` did with one clip: transformers ``generate``, greedy,
    2 to int(4 * seconds + 20.5) new tokens, eos and pad from the tokenizer; ids before eos."""
    hubert, llm, bridge, tok = parts
    max_new = int(4 * (len(wave) / 16000) + 20 + 0.5)
    with torch.no_grad():
        out = llm.generate(inputs_embeds=_reference_prompt(parts, wave), do_sample=False, num_beams=1,
                           min_new_tokens=2, max_new_tokens=max_new, eos_token_id=tok.eos_id, pad_token_id=tok.pad_id)
    ids = out[0].tolist()
    return ids[: ids.index(tok.eos_id)] if tok.eos_id in ids else ids


def test_greedy_matches_documented_procedure_batch_1_and_batched(released):
    model = load(released)
    assert model.config.encoder.name == "hubert" and model.config.decoder.name == "gpt-neox"
    parts = _reference_parts(released)
    wave, lens = make_audio(SECONDS, seed=5)
    expected = [_reference_greedy(parts, wave[i, : lens[i]]) for i in range(len(SECONDS))]
    alone = [model.generate(wave[i : i + 1, : lens[i]], lens[i : i + 1])[0] for i in range(len(SECONDS))]
    assert alone == expected
    assert model.generate(wave, lens) == expected
    texts = [model.tokenizer.decode(ids) for ids in expected]
    assert all("[SEP]" not in t and "<s>" not in t for t in texts)


@pytest.fixture(scope="module")
def loop_case(looping):
    """(clips as arrays, the released code's ids per clip) for the looping folder."""
    wave, lens = make_audio(LOOP_SECONDS, seed=5)
    clips = [wave[i, : lens[i]] for i in range(len(LOOP_SECONDS))]
    parts = _reference_parts(looping)
    expected = [_released_generate(parts, clip) for clip in clips]
    # The case is worth something only if the loop guard would change it: >= 12 repeats in many clips.
    assert sum(is_looping(ids, 12) for ids in expected) >= 4
    assert len({tuple(ids[:4]) for ids in expected}) > 1  # the audio decides how each one starts
    return clips, expected


def test_looping_released_folder_decodes_as_the_released_code_by_default(looping, loop_case):
    clips, expected = loop_case
    model = load(looping)
    assert model.config.decode.repetition_limit == 0
    lens = torch.tensor([len(c) for c in clips])
    wave = torch.zeros(len(clips), int(lens.max()))
    for i, clip in enumerate(clips):
        wave[i, : len(clip)] = clip
    assert [model.generate(c[None], lens[i : i + 1])[0] for i, c in enumerate(clips)] == expected
    assert model.generate(wave, lens) == expected
    texts = [model.tokenizer.decode(ids).strip() for ids in expected]
    arrays = [c.numpy() for c in clips]
    for batch_size in (1, 16):
        assert [r.text for r in transcribe(model, arrays, batch_size=batch_size)] == texts
    # The guard stays one option away, and cuts the loops.
    guarded = model.generate(wave, lens, GenerationConfig.for_model(model.config, repetition_limit=12))
    assert guarded != expected and all(g == e[: len(g)] for g, e in zip(guarded, expected))
    assert [r.text for r in transcribe(model, arrays, batch_size=16, repetition_limit=12)] != texts


def test_released_decode_defaults_survive_a_save_and_nue_models_keep_the_guard(tmp_path, looping):
    model = load(looping)
    decode = model.config.decode
    assert (decode.min_new_tokens, decode.tokens_per_second, decode.extra_tokens, decode.ctc_weight) == (2, 4.0, 20, 0.0)
    assert decode.repetition_limit == 0
    assert load(save_model(model, tmp_path / "nue")).config.decode.repetition_limit == 0
    assert DecodeSpec().repetition_limit == GenerationConfig().repetition_limit == 12


def test_cli_repetition_limit_on_transcribe_and_evaluate(tmp_path, looping, loop_case):
    import soundfile as sf

    clips, expected = loop_case
    model = load(looping)
    texts = [model.tokenizer.decode(ids).strip() for ids in expected]
    rows = []
    for i, clip in enumerate(clips):
        sf.write(str(tmp_path / f"c{i}.wav"), clip.numpy(), 16000, subtype="FLOAT")
        rows.append(json.dumps({"id": f"c{i}", "audio": f"c{i}.wav", "text": texts[i]}) + "\n")
    (tmp_path / "test.jsonl").write_text("".join(rows), encoding="utf-8")
    wavs = [str(tmp_path / f"c{i}.wav") for i in range(len(clips))]
    runner = CliRunner()
    res = runner.invoke(app, ["transcribe", str(looping), *wavs, "--format", "text", "--repetition-limit", "12", "--no-progress"])
    assert res.exit_code == 0, res.output
    guarded = res.stdout.splitlines()
    assert len(guarded) == len(texts) and guarded != texts
    assert all(t.startswith(g) for g, t in zip(guarded, texts))
    cer = {}
    for limit in (None, 12):  # references: the released code's transcripts
        out = tmp_path / f"eval{limit}"
        extra = [] if limit is None else ["--repetition-limit", str(limit)]
        res = runner.invoke(app, ["evaluate", str(looping), str(tmp_path / "test.jsonl"), "-o", str(out),
                                  "--language", "none", "--no-progress", *extra])
        assert res.exit_code == 0, res.output
        summary = json.loads((out / "summary.json").read_text())
        assert summary["repetition_limit"] == limit
        cer[limit] = summary["cer"]
    assert cer[None] == 0.0 and cer[12] > 0.0
    res = runner.invoke(app, ["transcribe", str(looping), wavs[0], "--repetition-limit", "-1"])
    assert res.exit_code == 2


def test_prompt_logits_match_direct_computation(released):
    model = load(released)
    parts = _reference_parts(released)
    wave, lens = make_audio([0.9], seed=6)
    with torch.no_grad():
        expected = parts[1](inputs_embeds=_reference_prompt(parts, wave[0])).logits
        speech = model.encode_speech(wave, lens)
        packed = model.pack_prompt(speech)
        got = model.decoder(packed.embeds, packed.attention_mask, packed.position_ids).logits
    assert torch.allclose(got, expected, atol=1e-4)


@pytest.mark.parametrize("fmt,style", [("bin", "g_v"), ("safetensors", "g_v"), ("bin", "parametrizations")])
def test_bin_and_weight_norm_variants_load(tmp_path, released, fmt, style):
    other = make_released_folder(tmp_path / "m", fmt=fmt, weight_norm_style=style)
    wave, lens = make_audio([0.7], seed=7)
    with torch.no_grad():
        a = load(released).encode_speech(wave, lens).embeds
        b = load(other).encode_speech(wave, lens).embeds
    assert torch.equal(a, b)


def test_export_round_trip_is_bit_exact(tmp_path, released):
    model = load(released)
    export_released(model, tmp_path / "out")
    again = load(tmp_path / "out")
    wave, lens = make_audio([0.6, 0.9], seed=8)
    with torch.no_grad():
        ids = (torch.tensor([[5, 6, 7]]).expand(2, -1), torch.tensor([3, 2]))
        assert torch.equal(model(wave, lens, ids).logits, again(wave, lens, ids).logits)
    # and a saved nue folder of the re-loaded model exports to identical files
    export_released(again, tmp_path / "out2")
    assert (tmp_path / "out" / "model.safetensors").read_bytes() == (tmp_path / "out2" / "model.safetensors").read_bytes()


def test_export_refuses_compositions_the_layout_cannot_hold(tmp_path, released):
    from nue_core.composer import compose
    from tests.conftest import tiny_config

    with pytest.raises(ConfigError, match="holds only 'hubert'"):
        export_released(compose(tiny_config(encoder="wav2vec2")), tmp_path / "x")
    with pytest.raises(ConfigError, match="sentencepiece"):
        export_released(compose(tiny_config()), tmp_path / "x")


def test_lora_adapter_saves_only_what_changed_and_merges_back(tmp_path, released):
    model = load(released)
    cfg = model.config.model_copy(update={
        "encoder": model.config.encoder.model_copy(update={"trainable": False}),
        "bridge": model.config.bridge.model_copy(update={"trainable": False}),
        "decoder": model.config.decoder.model_copy(update={"lora": LoraSpec(r=4, alpha=8)}),
    })
    reconfigure(model.train(), cfg)
    wave, lens = make_audio([0.7, 0.5], seed=9)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    loss = model(wave, lens, model.target_ids(["hello", "world"])).loss
    loss.backward()
    opt.step()
    save_adapter(model, tmp_path / "adapter", base=released)
    from safetensors.torch import load_file

    tensors = load_file(str(tmp_path / "adapter" / "adapter.safetensors"))
    # query_key_value (48 -> 144) and dense (48 -> 48) in each of 2 layers: r * (in + out) each
    expected = 2 * (4 * (48 + 144) + 4 * (48 + 48))
    assert all("lora_" in k for k in tensors) and sum(t.numel() for t in tensors.values()) == expected
    adapted = load(tmp_path / "adapter")
    ids = (torch.tensor([[5, 6, 7]]).expand(2, -1), torch.tensor([3, 2]))
    with torch.no_grad():
        reference = model.eval()(wave, lens, ids).logits
        assert torch.equal(adapted(wave, lens, ids).logits, reference)
        merged = merge_adapters(adapted)
        assert merged.config.decoder.lora is None
        assert torch.allclose(merged(wave, lens, ids).logits, reference, atol=1e-5)
    export_released(merged, tmp_path / "merged")
    with torch.no_grad():
        assert torch.allclose(load(tmp_path / "merged")(wave, lens, ids).logits, reference, atol=1e-5)


def test_cli_export_and_merge_lora(tmp_path, released):
    model = load(released)
    reconfigure(model, model.config.model_copy(update={"decoder": model.config.decoder.model_copy(update={"lora": LoraSpec(r=2)})}))
    save_adapter(model, tmp_path / "adapter", base=released)
    nue = [sys.executable, "-c", "from nue_core.cli import main; main()"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([*nue, "merge-lora", str(tmp_path / "adapter"), "-o", str(tmp_path / "merged")], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    res = subprocess.run([*nue, "export", str(tmp_path / "merged"), "--format", "nue-asr", "-o", str(tmp_path / "rel")], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    assert load(tmp_path / "rel").config.decoder.lora is None
    res = subprocess.run([*nue, "export", str(tmp_path / "merged"), "--format", "onnx", "-o", str(tmp_path / "x")], capture_output=True, text=True, env=env)
    assert res.returncode == 2 and "unknown export format 'onnx'" in res.stderr


def test_nue_transcribe_runs_a_released_folder_as_the_released_code(tmp_path, looping, loop_case):
    import soundfile as sf

    clips, expected = loop_case
    paths = []
    for i, clip in enumerate(clips):
        paths.append(tmp_path / f"clip{i}.wav")
        sf.write(str(paths[-1]), clip.numpy(), 16000, subtype="FLOAT")
    nue = [sys.executable, "-c", "from nue_core.cli import main; main()"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = tmp_path / "out.jsonl"
    res = subprocess.run([*nue, "transcribe", str(looping), *map(str, paths), "-o", str(out), "--batch-size", "3",
                          "--no-progress"], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    tokenizer = SentencePieceTokenizer(looping)
    assert [r["text"] for r in rows] == [tokenizer.decode(ids).strip() for ids in expected]
    # Nothing from the libraries on stderr (it would break into the progress bar), e.g. transformers'
    # "`past_key_values`/`cache_params` are deprecated" once per process.
    assert "deprecated" not in res.stderr and "[transformers]" not in res.stderr, res.stderr
