"""``ctc-compress`` vs ``conv`` bridge: LLM prompt tokens per second of audio, and decode speed.

Both tiny models are trained the same number of steps on the same data (ctc-compress with its CTC
loss, weight 0.3, so its CTC head learns where to merge). On the paper-size model the bridge is
swapped in place; with random weights its CTC head merges at random, so only the conv figures
and the speed at the prompt length it happens to give are meaningful there.

    python benchmarks/decode_bridges.py [--paper] [--smoke]
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import decode_common as common  # noqa: E402

from nue_core.generation import GenerationConfig  # noqa: E402


@torch.inference_mode()
def measure(model, audio, batch_size: int, max_new_tokens: int | None = None) -> dict:
    """Prompt vectors per audio second and batched decode time over ``audio``."""
    dtype = next(model.parameters()).dtype
    vectors = 0
    for k in range(0, len(audio), batch_size):
        waves, lengths = common.batch(audio[k : k + batch_size])
        vectors += int(model.encode_speech(waves.to(dtype), lengths).lengths.sum())
    cfg = GenerationConfig(max_new_tokens=max_new_tokens)

    def decode() -> int:
        tokens = 0
        for k in range(0, len(audio), batch_size):
            waves, lengths = common.batch(audio[k : k + batch_size])
            tokens += sum(map(len, model.generate(waves.to(dtype), lengths, cfg)))
        return tokens

    tokens, seconds = common.timed(decode)
    audio_s = sum(map(len, audio)) / common.SR
    return {"vectors_per_s": vectors / audio_s, "decode_s": seconds, "tokens": tokens, "rtf": seconds / audio_s}


def report(name: str, r: dict) -> None:
    print(f"[{name}] {r['vectors_per_s']:.1f} speech vectors per audio second; decode {r['decode_s']:.2f} s "
          f"({r['tokens']} tokens, RTF {r['rtf']:.3f})")


def swap_bridge(model, name: str, options: dict) -> None:
    """Replace ``model.bridge`` by a new registered bridge wired to the same widths."""
    from nue_core.composer import _build
    from nue_core.config import ComponentSpec
    from nue_core.plugins import get_plugins
    from nue_core.registry import BuildContext

    plugins = get_plugins()
    ctx = BuildContext(load_weights=False, architectures=plugins.registry.architectures)
    ctx.in_dim, ctx.out_dim = model.encoder.output_dim, model.decoder.embed_dim
    ctx.input_frame_rate_hz, ctx.tokenizer = model.encoder.frame_rate_hz, model.tokenizer
    ctx.ctc_vocab_size = model.tokenizer.vocab_size
    bridge = _build(plugins, "bridge", ComponentSpec.model_validate({"name": name, **options}), ctx)
    common.fast_fill(bridge)
    model.bridge = bridge.to(next(model.parameters()).dtype).eval()


def main(argv: list[str] | None = None) -> dict:
    parser = common.bench_parser(__doc__)
    args = parser.parse_args(argv)
    n = 8 if args.smoke else args.utterances
    audio, _ = common.clips(n, seed=321)
    results = {}
    for preset, bridge in (("tiny", "conv"), ("tiny-ctc-compress", "ctc-compress")):
        # The presets themselves (same encoder and decoder, only the bridge differs), not the default model.
        model, desc = common.tiny_model(args.smoke, args.train_steps, preset=preset, use_default=False)
        results[bridge] = measure(model, audio, args.batch_size, max_new_tokens=6 if args.smoke else None)
        report(f"{bridge}: {desc}", results[bridge])
    print(f"ctc-compress / conv prompt length: {results['ctc-compress']['vectors_per_s'] / results['conv']['vectors_per_s']:.2f}; "
          f"decode time ratio conv / ctc-compress: {results['conv']['decode_s'] / results['ctc-compress']['decode_s']:.2f}")
    if args.paper and (big := common.paper_model(args.paper_layers)) is not None:
        audio = common.clips(4, seed=5)[0]
        results["paper-conv"] = measure(big, audio, 4, max_new_tokens=4)
        report("paper-size conv, random weights", results["paper-conv"])
        swap_bridge(big, "ctc-compress", {"kernel_sizes": [4, 4], "strides": [2, 2]})
        results["paper-ctc"] = measure(big, audio, 4, max_new_tokens=4)
        report("paper-size ctc-compress, random weights (random merges)", results["paper-ctc"])
    return results


if __name__ == "__main__":
    main()
