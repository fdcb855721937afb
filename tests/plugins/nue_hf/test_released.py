"""The released Nue-ASR layout: load, same transcripts as the documented procedure, export, LoRA."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from nue_core.checkpoint import load, save_adapter
from nue_core.config import LoraSpec
from nue_core.errors import CheckpointError, ConfigError
from nue_core.generation import GenerationConfig
from nue_core.trainability import merge_adapters, reconfigure
from nue_hf.released import load_released
from nue_hf.released_export import export_released
from nue_hf.tokenizers import SentencePieceTokenizer
from tests.conftest import make_audio
from tests.plugins.nue_hf.released_fixture import make_released_folder

SECONDS = [0.8, 0.5, 1.1]


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    return make_released_folder(tmp_path_factory.mktemp("rel") / "nue-asr")


def _reference_parts(folder):
    """The documented parts, built directly from the folder with transformers (fp16 -> fp32)."""
    from tests.plugins.nue_hf.released_fixture import build_parts

    hubert, llm, bridge = build_parts(0)
    # Same weights as on disk: round through fp16 like the released file.
    for module in (hubert, llm):
        with torch.no_grad():
            for p in module.parameters():
                p.copy_(p.half().float())
    bridge = {k: v.half().float() for k, v in bridge.items()}
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


def test_greedy_matches_documented_procedure_batch_1_and_batched(released):
    model = load(released)
    assert model.config.encoder.name == "hubert" and model.config.decoder.name == "gpt-neox"
    parts = _reference_parts(released)
    wave, lens = make_audio(SECONDS, seed=5)
    expected = [_reference_greedy(parts, wave[i, : lens[i]]) for i in range(len(SECONDS))]
    cfg = GenerationConfig(repetition_limit=0)
    alone = [model.generate(wave[i : i + 1, : lens[i]], lens[i : i + 1], cfg)[0] for i in range(len(SECONDS))]
    assert alone == expected
    assert model.generate(wave, lens, cfg) == expected
    texts = [model.tokenizer.decode(ids) for ids in expected]
    assert all("[SEP]" not in t and "<s>" not in t for t in texts)


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


def test_nue_transcribe_runs_a_released_folder(tmp_path, released):
    import json

    import soundfile as sf

    wave, lens = make_audio(SECONDS, seed=5)
    paths = []
    for i in range(len(SECONDS)):
        paths.append(tmp_path / f"clip{i}.wav")
        sf.write(str(paths[-1]), wave[i, : lens[i]].numpy(), 16000, subtype="FLOAT")
    nue = [sys.executable, "-c", "from nue_core.cli import main; main()"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = tmp_path / "out.jsonl"
    res = subprocess.run([*nue, "transcribe", str(released), *map(str, paths), "-o", str(out), "--batch-size", "2",
                          "--no-progress"], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    model = load(released)
    parts = _reference_parts(released)
    expected = [model.tokenizer.decode(_reference_greedy(parts, wave[i, : lens[i]])) for i in range(len(SECONDS))]
    assert [r["text"] for r in rows] == expected
