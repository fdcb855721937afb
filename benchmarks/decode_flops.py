"""Model FLOPs per second of audio vs this machine's measured matrix-multiply peak.

FLOPs are counted by ``torch.utils.flop_counter`` while one utterance is transcribed at batch 1
(encoder + bridge + prompt prefill + each generated token). Dividing by the measured peak gives the
fastest possible real-time factor if every FLOP ran at matmul peak; comparing with the measured
RTF says how far decoding is from the compute limit (at batch 1 it is bound by reading weights).

    python benchmarks/decode_flops.py [--paper] [--smoke]
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
import decode_common as common  # noqa: E402

from nue_core.generation import GenerationConfig  # noqa: E402


@torch.inference_mode()
def measure(model, audio, peak: float, batch_size: int, max_new_tokens: int | None = None) -> dict:
    """FLOPs per audio second (batch 1) and measured RTF at batch 1 and at ``batch_size``."""
    dtype = next(model.parameters()).dtype
    cfg = GenerationConfig(max_new_tokens=max_new_tokens)
    common.plain_weights(model)
    counter = FlopCounterMode(display=False)
    with counter:
        for clip in audio:
            waves, lengths = common.batch([clip])
            model.generate(waves.to(dtype), lengths, cfg)
    flops = counter.get_total_flops()
    audio_s = sum(map(len, audio)) / common.SR

    def run(size: int) -> None:
        for k in range(0, len(audio), size):
            waves, lengths = common.batch(audio[k : k + size])
            model.generate(waves.to(dtype), lengths, cfg)

    _, t1 = common.timed(lambda: run(1))
    _, tb = common.timed(lambda: run(batch_size))
    per_s = flops / audio_s
    return {"gflop_per_audio_s": per_s / 1e9, "bound_rtf": per_s / peak, "rtf_batch1": t1 / audio_s,
            "rtf_batched": tb / audio_s, "util_batch1": per_s / peak / (t1 / audio_s),
            "util_batched": per_s / peak / (tb / audio_s), "batch_size": batch_size}


def report(name: str, r: dict) -> None:
    print(f"[{name}] {r['gflop_per_audio_s']:.2f} GFLOP per audio second; at matmul peak RTF would be "
          f"{r['bound_rtf']:.4f}; measured RTF batch 1 {r['rtf_batch1']:.3f} ({100 * r['util_batch1']:.1f} % of peak), "
          f"batch {r['batch_size']} {r['rtf_batched']:.3f} ({100 * r['util_batched']:.1f} % of peak)")


def main(argv: list[str] | None = None) -> dict:
    parser = common.bench_parser(__doc__, utterances=16)
    args = parser.parse_args(argv)
    peak = common.matmul_peak(torch.float32, 512 if args.smoke else 2048, 0.2 if args.smoke else 1.0)
    print(f"measured float32 matmul peak: {peak / 1e9:.0f} GFLOP/s ({torch.get_num_threads()} threads)")
    n = 4 if args.smoke else args.utterances
    model, desc = common.tiny_model(args.smoke, args.train_steps)
    audio, _ = common.clips(n, seed=11)
    results = {"peak": peak, "tiny": measure(model, audio, peak, min(args.batch_size, n), 6 if args.smoke else None)}
    report(f"tiny: {desc}", results["tiny"])
    if args.paper and (big := common.paper_model(args.paper_layers)) is not None:
        audio = common.clips(2, seed=5)[0]
        results["paper"] = measure(big, audio, peak, 2, max_new_tokens=3)
        report("paper-size, random weights, float32", results["paper"])
    return results


if __name__ == "__main__":
    main()
