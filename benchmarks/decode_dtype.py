"""float32 vs ``--dtype auto`` vs ``--quantize int8`` decoding on CPU, same utterances, batched greedy.

Prints the CPU flags and what ``auto`` picks on this machine (``nue_core.dtypes.plan_precision``),
the raw matrix-product speed of float32 and bfloat16, then:

- the embedded default model on its example clips plus FSDD recordings: real-time factor, WER
  (references from the file names) and token agreement with float32 of ``auto`` and ``int8``;
- with ``--paper``: the paper-size random-weight model (``--paper-layers N`` of its 36 decoder
  layers): speed of float32 and int8 and their token agreement, with the LM head kept float32
  (the default) and quantized too.

    python benchmarks/decode_dtype.py [--utterances N] [--paper --paper-layers N] [--smoke]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import decode_common as common  # noqa: E402

from nue_core.dtypes import apply_precision, cpu_flags, flags_summary, plan_precision  # noqa: E402
from nue_core.generation import GenerationConfig  # noqa: E402
from nue_core.quantize import quantize_decoder  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "nue_core" / "default_model" / "examples"


def labelled_clips(n: int, seed: int = 7) -> tuple[list[np.ndarray], list[str]]:
    """The default model's example clips and ``n`` FSDD recordings, with reference transcripts."""
    from nue_core.data.audio import load_audio

    audio, refs = [], []
    for path in sorted(EXAMPLES.glob("digits_*.wav")):
        audio.append(load_audio(path, common.SR))
        refs.append(path.stem.removeprefix("digits_").replace("_", " "))
    more, texts = common.clips(n, seed=seed)
    return audio + more, refs + texts


def decode(model, audio: list[np.ndarray], batch_size: int, config: GenerationConfig) -> list[list[int]]:
    out: list[list[int]] = []
    with torch.inference_mode():
        for k in range(0, len(audio), batch_size):
            waves, lengths = common.batch(audio[k : k + batch_size])
            out += model.generate(waves.to(model.input_dtype), lengths, config)
    return out


def wer(model, ids: list[list[int]], refs: list[str]) -> float | None:
    import jiwer

    if not any(refs):
        return None
    hyps = [model.tokenizer.decode(x).strip() for x in ids]
    return jiwer.wer(refs, hyps)


def default_model_figures(args, log=print) -> dict:
    """RTF, WER and agreement with float32 of float32, auto and int8 on the embedded default model."""
    from nue_core.checkpoint import load

    n = 4 if args.smoke else args.utterances
    audio, refs = labelled_clips(n)
    seconds = sum(len(a) for a in audio) / common.SR
    variants = {"float32": ("float32", None), "auto": ("auto", None), "int8": ("float32", "int8")}
    models, plans = {}, {}
    for name, (dtype, quantize) in variants.items():
        models[name] = common.tiny_model(True, 0)[0] if args.smoke else load("default")
        plans[name] = apply_precision(models[name], dtype, "cpu", quantize)
        models[name].eval()
    config = GenerationConfig.for_model(models["float32"].config)
    ids: dict[str, list[list[int]]] = {}
    times: dict[str, list[float]] = {name: [] for name in variants}
    for name, model in models.items():  # warm-up
        decode(model, audio[: args.batch_size], args.batch_size, config)
    # Interleaved repeats, best of each: other jobs on the machine slow all variants alike.
    for _ in range(max(args.repeat, 1)):
        for name, model in models.items():
            ids[name], t = common.timed(lambda: decode(model, audio, args.batch_size, config))
            times[name].append(t)
    results: dict = {}
    for name in variants:
        model, t, plan = models[name], min(times[name]), plans[name]
        results[name] = {"plan": plan.describe() if plan else "", "rtf": t / seconds, "seconds": t,
                         "median_s": float(np.median(times[name])),
                         "wer": wer(model, ids[name], refs), "agreement": common.agreement(ids["float32"], ids[name]),
                         "tokens": sum(map(len, ids[name]))}
        r = results[name]
        wer_text = "n/a" if r["wer"] is None else f"{100 * r['wer']:.1f} %"
        log(f"[default model, {len(audio)} clips, {seconds:.0f} s audio] {name:8s} RTF {r['rtf']:.4f} "
            f"({t:.2f} s), WER {wer_text}, token agreement with float32 {100 * r['agreement']:.1f} % "
            f"({r['tokens']} tokens) -- {r['plan']}")
    for name in ("auto", "int8"):
        ratio = [a / b for a, b in zip(times[name], times["float32"])]  # round by round: same machine load
        log(f"  {name} / float32 time: best {results[name]['seconds'] / results['float32']['seconds']:.2f}x, "
            f"median {results[name]['median_s'] / results['float32']['median_s']:.2f}x, median of per-round ratios "
            f"{np.median(ratio):.2f}x over {len(ratio)} interleaved rounds")
    return results


def paper_figures(args, log=print) -> dict | None:
    """float32 vs int8 (LM head float32, then int8 too) on the paper-size random-weight model."""
    model = common.paper_model(args.paper_layers, log=log)
    if model is None:
        return None
    audio = common.clips(4, seed=5)[0]
    config = GenerationConfig(max_new_tokens=args.paper_tokens, repetition_limit=0)
    results: dict = {}
    decode(model, audio[:1], 1, GenerationConfig(max_new_tokens=2, repetition_limit=0))  # warm-up
    f32, t32 = common.timed(lambda: decode(model, audio, 4, config))
    results["float32"] = {"seconds": t32}
    for name, lm_head in (("int8", False), ("int8+lm_head", True)):
        quantize_decoder(model.decoder, "int8", lm_head=lm_head)  # the second pass adds only the head
        decode(model, audio[:1], 1, GenerationConfig(max_new_tokens=2, repetition_limit=0))  # warm-up
        ids, t = common.timed(lambda: decode(model, audio, 4, config))
        results[name] = {"seconds": t, "speedup": t32 / t, "agreement": common.agreement(f32, ids)}
    tokens = sum(map(len, f32))
    log(f"[paper-size, {args.paper_layers} layers, random weights, batch 4, {tokens} tokens] float32 {t32:.2f} s")
    for name in ("int8", "int8+lm_head"):
        r = results[name]
        log(f"  {name:13s} {r['seconds']:.2f} s ({r['speedup']:.2f}x float32), token agreement with float32 "
            f"{100 * r['agreement']:.1f} %")
    return results


def main(argv: list[str] | None = None) -> dict:
    parser = common.bench_parser(__doc__, utterances=60)
    parser.add_argument("--paper-tokens", type=int, default=8, help="tokens decoded per clip on the paper model")
    args = parser.parse_args(argv)
    flags = cpu_flags()
    print(f"cpu flags: {flags_summary(flags)} (torch kernels: {torch.backends.cpu.get_cpu_capability()}); "
          f"auto: {plan_precision('cpu').describe()}")
    size = 256 if args.smoke else 1024
    peaks = {d: common.matmul_peak(getattr(torch, d), size, 0.2 if args.smoke else 1.0) for d in ("float32", "bfloat16")}
    print(f"matmul {size}^3: float32 {peaks['float32'] / 1e9:.0f} GFLOP/s, bfloat16 {peaks['bfloat16'] / 1e9:.1f} "
          f"GFLOP/s ({peaks['bfloat16'] / peaks['float32']:.2f}x)")
    results = {"matmul": peaks, "default": default_model_figures(args)}
    if args.paper:
        results["paper"] = paper_figures(args)
    return results


if __name__ == "__main__":
    main()
