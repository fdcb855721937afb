"""Batched + KV-cache decoding vs the released code's one-at-a-time path, on the same model.

Prints the throughput ratio (one-at-a-time time / batched time) and whether the transcripts are
identical (token ids, greedy, no repetition guard, since the released code had none).

    python benchmarks/decode_batched.py                 # tiny recipe model, 64 FSDD utterances
    python benchmarks/decode_batched.py --paper         # + paper-size random-weight model
    python benchmarks/decode_batched.py --only-paper    # the paper-size model alone (implies --paper)
    python benchmarks/decode_batched.py --smoke         # seconds: random tiny model, 8 utterances
    python benchmarks/decode_batched.py --mixed         # + continuous vs static batches, clips of 1-30 s
    python benchmarks/decode_batched.py --only-mixed    # that comparison alone

``--mixed`` decodes clips of 1-30 s (FSDD digits joined with pauses) with the embedded default
model, cut into chunks as ``nue transcribe`` cuts them, two ways at the same batch size: static
batches of similar length (``SpeechLM.generate``, each batch runs until its longest item ends) and
the continuous-batching engine (a finished row is replaced by the next chunk at once). It prints
the ratio of their wall times and whether the token ids are identical.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import decode_common as common  # noqa: E402

from nue_core.generation import GenerationConfig  # noqa: E402


def compare(model, audio, batch_size: int, max_new_tokens: int | None = None, ctc_weight: float = 0.0,
            repeat: int = 1) -> dict:
    """Decode ``audio`` both ways; returns times, ratio, identical flag and token agreement.

    With ``ctc_weight`` > 0 the batched path is also timed with joint CTC/decoder scoring (the
    model's own default decoding when its config sets ``decode.ctc_weight``).
    """
    cfg = GenerationConfig(repetition_limit=0, max_new_tokens=max_new_tokens)
    order = sorted(range(len(audio)), key=lambda i: -len(audio[i]))  # batches of similar length

    def batched(cfg: GenerationConfig = cfg) -> list[list[int]]:
        out: list[list[int]] = [[] for _ in audio]
        for k in range(0, len(order), batch_size):
            idx = order[k : k + batch_size]
            waves, lengths = common.batch([audio[i] for i in idx])
            for i, ids in zip(idx, model.generate(waves.to(next(model.parameters()).dtype), lengths, cfg)):
                out[i] = ids
        return out

    ref, t_ref = common.timed(lambda: [common.reference_decode(model, a, max_new_tokens) for a in audio], repeat)
    new, t_new = common.timed(batched, repeat)
    tokens = sum(len(x) for x in new)
    joint = {}
    if ctc_weight > 0:
        _, t_joint = common.timed(lambda: batched(GenerationConfig(repetition_limit=0, max_new_tokens=max_new_tokens,
                                                                  ctc_weight=ctc_weight)), repeat)
        joint = {"ctc_weight": ctc_weight, "joint_s": t_joint, "joint_ratio": t_ref / t_joint}
    return {**joint, "utterances": len(audio), "batch_size": batch_size, "reference_s": t_ref, "batched_s": t_new,
            "ratio": t_ref / t_new, "identical": ref == new, "agreement": common.agreement(ref, new),
            "tokens": tokens, "audio_s": sum(len(a) for a in audio) / common.SR}


def compare_continuous(model, audio: list[np.ndarray], batch_size: int, repeat: int = 1) -> dict:
    """Static batches vs the continuous-batching engine on the chunks of ``audio``, same batch size."""
    from nue_core.inference.chunking import split_points
    from nue_core.inference.engine import Engine, EngineLimits
    from nue_core.inference.transcriber import default_plan

    plan = default_plan(float(model.config.max_audio_seconds))
    chunks = [a[x:y] for a in audio for x, y in split_points(a, common.SR, plan)]
    order = sorted(range(len(chunks)), key=lambda i: -len(chunks[i]))  # longest first, as Transcriber
    cfg = GenerationConfig.for_model(model.config)

    def static() -> list[list[int]]:
        out: list[list[int]] = [[] for _ in chunks]
        for k in range(0, len(order), batch_size):
            idx = order[k : k + batch_size]
            waves, lengths = common.batch([chunks[i] for i in idx])
            for i, ids in zip(idx, model.generate(waves, lengths, cfg)):
                out[i] = ids
        return out

    def continuous() -> list[list[int]]:
        engine = Engine(model, cfg, EngineLimits(max_rows=batch_size, max_prefill=batch_size, max_queued_seconds=np.inf))
        results = engine.run([chunks[i] for i in order])
        out: list[list[int]] = [[] for _ in chunks]
        for i, r in zip(order, results):
            out[i] = r.ids
        return out

    ref, t_static = common.timed(static, repeat)
    new, t_engine = common.timed(continuous, repeat)
    return {"clips": len(audio), "chunks": len(chunks), "audio_s": sum(len(a) for a in audio) / common.SR,
            "tokens": sum(len(x) for x in new), "batch_size": batch_size, "static_s": t_static,
            "continuous_s": t_engine, "ratio": t_static / t_engine, "identical": ref == new}


def report(name: str, r: dict) -> None:
    print(f"[{name}] {r['utterances']} utterances ({r['audio_s']:.1f} s audio, {r['tokens']} tokens): "
          f"one-at-a-time {r['reference_s']:.2f} s, batch {r['batch_size']} {r['batched_s']:.2f} s -> "
          f"throughput ratio {r['ratio']:.1f}x; transcripts identical: {r['identical']} "
          f"(token agreement {100 * r['agreement']:.1f} %)")
    if "joint_s" in r:
        print(f"[{name}] batch {r['batch_size']} with joint CTC scoring (ctc_weight {r['ctc_weight']}): "
              f"{r['joint_s']:.2f} s -> throughput ratio {r['joint_ratio']:.1f}x")


def main(argv: list[str] | None = None) -> dict:
    # no_grad for the whole run, restored afterwards (tests call main() in-process).
    with torch.no_grad():
        return _run(argv)


def _run(argv: list[str] | None) -> dict:
    parser = common.bench_parser(__doc__)
    parser.add_argument("--paper-utterances", type=int, default=4)
    parser.add_argument("--paper-tokens", type=int, default=4, help="tokens per utterance on the paper model")
    parser.add_argument("--only-paper", action="store_true", help="only the paper-size model (implies --paper)")
    parser.add_argument("--mixed", action="store_true", help="also continuous vs static batches, clips of 1-30 s")
    parser.add_argument("--mixed-clips", type=int, default=48)
    parser.add_argument("--only-mixed", action="store_true", help="only the mixed-length comparison (implies --mixed)")
    args = parser.parse_args(argv)
    # --only-paper alone used to skip the tiny model and run nothing else: it asks for the paper model.
    args.paper = args.paper or args.only_paper
    args.mixed = args.mixed or args.only_mixed
    n = 8 if args.smoke else args.utterances
    results = {}
    print(f"threads: {torch.get_num_threads()}")
    if not (args.only_paper or args.only_mixed):
        with torch.enable_grad():
            model, desc = common.tiny_model(args.smoke, args.train_steps)
        audio, _ = common.clips(n, seed=123)
        print(f"model: {desc}")
        # The model's own joint-CTC weight (compose guarantees a CTC head when it is set); smoke
        # runs try 0.5 on any model that has a head.
        has_ctc = getattr(model.bridge, "ctc_blank_id", None) is not None
        ctc_weight = model.config.decode.ctc_weight or (0.5 if args.smoke and has_ctc else 0.0)
        results["tiny"] = compare(model, audio, min(args.batch_size, n), max_new_tokens=6 if args.smoke else None,
                                  ctc_weight=ctc_weight, repeat=1 if args.smoke else args.repeat)
        report("tiny", results["tiny"])
    if args.mixed:
        import nue_core

        default = nue_core.load("default").eval()
        r = compare_continuous(default, common.joined_clips(8 if args.smoke else args.mixed_clips, 1.0, 30.0), args.batch_size,
                               repeat=1 if args.smoke else args.repeat)
        results["mixed"] = r
        print(f"[mixed, default model] {r['clips']} clips of 1-30 s ({r['audio_s']:.0f} s audio, {r['chunks']} chunks, "
              f"{r['tokens']} tokens), batch {r['batch_size']}: static batches {r['static_s']:.2f} s, continuous "
              f"{r['continuous_s']:.2f} s -> ratio {r['ratio']:.2f}x; token ids identical: {r['identical']}")
    if args.paper:
        big = common.paper_model(args.paper_layers)
        if big is not None:
            audio, _ = common.clips(args.paper_utterances, seed=7)
            size = min(args.batch_size, args.paper_utterances)
            results["paper"] = compare(big, audio, size, max_new_tokens=args.paper_tokens)
            report("paper-size, random weights, float32", results["paper"])
    return results


if __name__ == "__main__":
    main()
