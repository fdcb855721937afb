"""Shared pieces of the decode benchmarks: models, audio, the released code's decoding path, timing.

Models:
- ``tiny``: the embedded default model (``nue_core/default_model``) when it exists, else the
  ``tiny`` preset trained here for a few hundred Adam steps on FSDD digit words (real speech in
  /work/shared/data/fsdd or $NUE_FSDD; random noise when absent) so that it emits eos like a
  trained model. ``--smoke`` uses a random tiny model and no training (for CI).
- ``paper``: HuBERT-base + conv bridge + GPT-NeoX 36 x 2816 (vocab 32000), about 3.7 B parameters
  with random weights (~15 GB in float32). Built without transformers' weight init, then filled
  from a small random buffer (seconds instead of minutes). Skipped when less than 18 GB is free.
"""

from __future__ import annotations

import argparse
import os
import time
import zlib
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from nue_core.composer import compose
from nue_core.model import SpeechLM

SR = 16000
FSDD = Path(os.environ.get("NUE_FSDD", "/work/shared/data/fsdd/recordings"))
DIGITS = "zero one two three four five six seven eight nine".split()
PAPER_GB = 18.0
PAPER_DECODER = {"hidden_size": 2816, "num_hidden_layers": 36, "num_attention_heads": 22, "intermediate_size": 11264,
                 "vocab_size": 32000, "rotary_pct": 1.0, "use_parallel_residual": False, "max_position_embeddings": 2048}


def clips(n: int, seed: int = 0) -> tuple[list[np.ndarray], list[str]]:
    """``n`` utterances (16 kHz float32) and their transcripts: FSDD digits, else noise."""
    from nue_core.data.audio import load_audio

    if FSDD.is_dir():
        files = sorted(FSDD.glob("*.wav"))
        picked = [files[i] for i in np.random.default_rng(seed).permutation(len(files))[:n]]
        return [load_audio(f, SR) for f in picked], [DIGITS[int(f.name[0])] for f in picked]
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(int(SR * rng.uniform(0.4, 1.2))) * 0.1).astype(np.float32) for _ in range(n)], [""] * n


def batch(arrays: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded (b, s) waveforms and (b,) lengths."""
    lengths = torch.tensor([len(a) for a in arrays])
    waves = torch.zeros(len(arrays), int(lengths.max()))
    for i, a in enumerate(arrays):
        waves[i, : len(a)] = torch.from_numpy(a)
    return waves, lengths


def train_tiny(preset: str = "tiny", steps: int = 300, seed: int = 0, log: Callable[[str], None] = print) -> SpeechLM:
    """The ``preset`` tiny model trained ``steps`` Adam steps on FSDD digit words (batch 16)."""
    torch.manual_seed(seed)
    model = compose(preset).train()
    audio, texts = clips(400, seed=seed + 1)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    for step in range(steps):
        idx = rng.choice(len(audio), 16, replace=False)
        waves, lengths = batch([audio[i] for i in idx])
        loss = model(waves, lengths, model.target_ids([texts[i] for i in idx])).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    log(f"trained {preset} for {steps} steps in {time.perf_counter() - start:.0f} s (last loss {loss.item():.3f})")
    model.is_trained = True  # its own loop trained it: save_model records that, transcribing does not warn
    return model.eval()


def tiny_model(smoke: bool, steps: int, preset: str = "tiny", log: Callable[[str], None] = print,
               use_default: bool = True) -> tuple[SpeechLM, str]:
    """(model, description) for the tiny recipe benchmarks.

    ``use_default``: return the embedded default model for ``tiny`` when it exists; False when
    the preset's own architecture matters (e.g. comparing bridges).
    """
    from nue_core.checkpoint import DEFAULT_MODEL_DIR, load

    if smoke:
        torch.manual_seed(0)
        return compose(preset).eval(), f"{preset} preset, random weights (smoke)"
    if use_default and preset == "tiny" and (DEFAULT_MODEL_DIR / "nue.yaml").exists():
        return load("default"), "embedded default model (nue_core/default_model)"
    desc = f"{preset} preset trained {steps} steps on FSDD digits"
    # Training takes minutes on 2 busy cores: keep the result for the other benchmark scripts.
    cache = Path(os.environ.get("NUE_BENCH_CACHE", "/tmp/nue-bench-cache")) / f"{preset}-{steps}"
    if (cache / "nue.yaml").exists():
        return load(cache), desc + f" (cached in {cache})"
    model = train_tiny(preset, steps, log=log)
    from nue_core.checkpoint import save_model

    save_model(model, cache)
    return model, desc


def free_gb() -> float:
    import psutil

    return psutil.virtual_memory().available / 2**30


def paper_model(layers: int = 36, log: Callable[[str], None] = print) -> SpeechLM | None:
    """Paper-size random-weight model, or None (with a message) when memory is short."""
    from transformers.initialization import no_init_weights

    need = PAPER_GB * layers / 36
    if free_gb() < need:
        log(f"paper-size model skipped: {free_gb():.1f} GB available, {need:.0f} GB needed")
        return None
    config = {"encoder": {"name": "hubert", "config": {}},  # HubertConfig defaults = HuBERT-base
              "bridge": {"name": "conv", "kernel_sizes": [4, 4], "strides": [2, 2]},
              "decoder": {"name": "gpt-neox", "tokenizer": "byte", "config": {**PAPER_DECODER, "num_hidden_layers": layers}},
              "prompt": {"prefix": "<s>", "postfix": "[SEP]"}}
    start = time.perf_counter()
    with no_init_weights():  # transformers' init of 3.7 B weights takes minutes on 2 cores
        model = compose(config)
    fast_fill(model)
    log(f"built paper-size model ({sum(p.numel() for p in model.parameters()) / 1e9:.2f} B parameters) "
        f"in {time.perf_counter() - start:.0f} s")
    return model.eval()


@torch.no_grad()
def fast_fill(model: torch.nn.Module, std: float = 0.02, seed: int = 0) -> None:
    """Random-looking weights fast: matrices tile a 1M-value normal buffer, norms get 1 / 0."""
    pool = torch.randn(1 << 20, generator=torch.Generator().manual_seed(seed)) * std
    for name, p in model.named_parameters():
        if p.ndim == 1:
            p.fill_(1.0 if name.endswith("weight") or "original0" in name else 0.0)
            continue
        flat = p.view(-1)
        offset = (zlib.crc32(name.encode()) % 997) * 1009  # a different phase per tensor, the same in every run
        for start in range(0, flat.numel(), pool.numel()):
            n = min(pool.numel(), flat.numel() - start)
            flat[start : start + n] = pool.roll(offset)[:n]


@torch.inference_mode()
def reference_generate(model: SpeechLM, audio: np.ndarray, max_new_tokens: int | None = None) -> list[int]:
    """One clip decoded the way the released Nue-ASR code did: batch 1, no attention masks, prompt
    ``embed(prefix) + speech + embed(postfix)``, transformers' ``generate`` (greedy, KV cache,
    min_new_tokens 2, max_new_tokens int(4 * seconds + 20 + 0.5)), on the model's device.

    Returns every token ``generate`` decided (eos included when it came).
    """
    device, dtype = model.device, model.input_dtype
    waves = torch.from_numpy(audio)[None].to(device=device, dtype=dtype)  # (1, s)
    speech = model.encode_speech(waves, torch.tensor([len(audio)], device=device))
    embed = model.decoder.embed
    ids = lambda x: torch.tensor([x], dtype=torch.long, device=device)  # noqa: E731
    parts = [embed(ids(model.prefix_ids)), speech.embeds, embed(ids(model.postfix_ids))]
    prompt = torch.cat([p.to(speech.embeds.dtype) for p in parts], dim=1)  # (1, l, d)
    limit = max_new_tokens or int(4 * len(audio) / SR + 20 + 0.5)
    out = model.decoder.model.generate(
        inputs_embeds=prompt, max_new_tokens=limit, min_new_tokens=2, do_sample=False, num_beams=1,
        eos_token_id=model.tokenizer.eos_id, pad_token_id=model.tokenizer.pad_id,
    )
    return out[0].tolist()


def reference_decode(model: SpeechLM, audio: np.ndarray, max_new_tokens: int | None = None) -> list[int]:
    """``reference_generate`` with eos and what follows it stripped (the transcript's ids)."""
    ids, eos = reference_generate(model, audio, max_new_tokens), model.tokenizer.eos_id
    return ids[: ids.index(eos)] if eos in ids else ids


def plain_weights(model: torch.nn.Module) -> None:
    """Fold weight-norm parametrizations (HuBERT's positional conv) into plain weights: the FLOP
    counter cannot run them, and the arithmetic is the same."""
    from torch.nn.utils import parametrize

    for module in model.modules():
        if parametrize.is_parametrized(module):
            for name in list(module.parametrizations):
                parametrize.remove_parametrizations(module, name, leave_parametrized=True)


def machine_line() -> str:
    """The machine a figure was measured on: CPU flags that decide its speed (avx2, avx512,
    native bfloat16, amx), cores, torch and its threads (``nue_core.dtypes`` reads the flags)."""
    import platform

    from nue_core.dtypes import cpu_flags, flags_summary

    return (f"cpu: {platform.machine()}, flags: {flags_summary(cpu_flags())}; {os.cpu_count()} cores; "
            f"torch {torch.__version__}, {torch.get_num_threads()} threads")


def joined_clips(n: int, low: float, high: float, seed: int = 0, pool: int = 200) -> list[np.ndarray]:
    """``n`` clips of ``low``-``high`` seconds: FSDD digits (noise when absent) joined with 0.1-0.5 s pauses."""
    rng = np.random.default_rng(seed)
    sources, _ = clips(pool, seed=seed)
    out = []
    for _ in range(n):
        target, parts, total = rng.uniform(low, high) * SR, [], 0
        while total < target:
            clip = sources[int(rng.integers(len(sources)))]
            pause = np.zeros(int(rng.uniform(0.1, 0.5) * SR), np.float32)
            parts += [clip, pause]
            total += len(clip) + len(pause)
        out.append(np.concatenate(parts)[: int(target)].astype(np.float32))
    return out


def timed(fn: Callable[[], object], repeat: int = 1) -> tuple[object, float]:
    """``fn()``'s value and its best wall time over ``repeat`` runs (the least disturbed by other jobs)."""
    best, value = float("inf"), None
    for _ in range(max(repeat, 1)):
        start = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - start)
    return value, best


def agreement(a: list[list[int]], b: list[list[int]]) -> float:
    """Share of token positions (over the longer of each pair) where two decodings agree."""
    same = total = 0
    for x, y in zip(a, b):
        total += max(len(x), len(y))
        same += sum(p == q for p, q in zip(x, y))
    return same / total if total else 1.0


def matmul_peak(dtype: torch.dtype, size: int = 2048, seconds: float = 1.0) -> float:
    """Measured FLOP/s of a square matrix product on this machine (best of repeated runs)."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    torch.mm(a, b)
    best, end = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < end:
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def bench_parser(description: str | None, utterances: int = 64) -> argparse.ArgumentParser:
    """The options every decode benchmark takes (scripts add their own on top)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--utterances", type=int, default=utterances)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--train-steps", type=int, default=300)
    parser.add_argument("--paper", action="store_true", help="also the paper-size random-weight model")
    parser.add_argument("--paper-layers", type=int, default=36)
    parser.add_argument("--smoke", action="store_true", help="tiny random model, few utterances (CI)")
    parser.add_argument("--repeat", type=int, default=3, help="time each path this many times, keep the best")
    return parser
