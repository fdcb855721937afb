"""float32 vs bfloat16 decoding on CPU (the whole model cast), same utterances, batched greedy.

Prints the speed ratio and the share of tokens on which the two agree. Also reports the raw
matrix-product speed of both dtypes on this machine (bfloat16 gains most where the CPU has AMX).

    python benchmarks/decode_dtype.py [--paper] [--smoke]
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import decode_common as common  # noqa: E402

from nue_core.generation import GenerationConfig  # noqa: E402


@torch.inference_mode()
def compare(model, audio, batch_size: int, max_new_tokens: int | None = None) -> dict:
    """Decode in float32, cast the model to bfloat16 in place, decode again."""
    cfg = GenerationConfig(max_new_tokens=max_new_tokens, repetition_limit=0)

    def decode(dtype: torch.dtype) -> list[list[int]]:
        out = []
        for k in range(0, len(audio), batch_size):
            waves, lengths = common.batch(audio[k : k + batch_size])
            out += model.generate(waves.to(dtype), lengths, cfg)
        return out

    f32, t32 = common.timed(lambda: decode(torch.float32))
    model.to(torch.bfloat16)
    bf16, t16 = common.timed(lambda: decode(torch.bfloat16))
    model.to(torch.float32)
    return {"float32_s": t32, "bfloat16_s": t16, "speedup": t32 / t16, "agreement": common.agreement(f32, bf16),
            "tokens": sum(map(len, f32))}


def report(name: str, r: dict) -> None:
    print(f"[{name}] float32 {r['float32_s']:.2f} s, bfloat16 {r['bfloat16_s']:.2f} s -> bfloat16 speedup "
          f"{r['speedup']:.2f}x; token agreement {100 * r['agreement']:.1f} % ({r['tokens']} tokens)")


def main(argv: list[str] | None = None) -> dict:
    parser = common.bench_parser(__doc__)
    args = parser.parse_args(argv)
    size = 512 if args.smoke else 2048
    peaks = {d: common.matmul_peak(getattr(torch, d), size, 0.2 if args.smoke else 1.0) for d in ("float32", "bfloat16")}
    print(f"matmul {size}^3: float32 {peaks['float32'] / 1e9:.0f} GFLOP/s, bfloat16 {peaks['bfloat16'] / 1e9:.0f} GFLOP/s "
          f"({peaks['bfloat16'] / peaks['float32']:.2f}x)")
    n = 8 if args.smoke else args.utterances
    model, desc = common.tiny_model(args.smoke, args.train_steps)
    audio, _ = common.clips(n, seed=99)
    results = {"matmul": peaks, "tiny": compare(model, audio, args.batch_size, 6 if args.smoke else None)}
    report(f"tiny: {desc}", results["tiny"])
    if args.paper and (big := common.paper_model(args.paper_layers)) is not None:
        audio = common.clips(4, seed=5)[0]
        results["paper"] = compare(big, audio, 4, max_new_tokens=4)
        report("paper-size, random weights, batch 4", results["paper"])
    return results


if __name__ == "__main__":
    main()
