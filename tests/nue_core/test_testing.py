"""The conformance kit passes correct toy components and names the check a broken one fails."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from nue_core.hookspecs import hookimpl
from nue_core.plugins import PluginSet, load_plugins
from nue_core.protocols import BridgeOutput, DecoderOutput, EncoderOutput
from nue_core.registry import BuildContext
from nue_core.testing import (
    ConformanceError,
    Example,
    check_bridge,
    check_component,
    check_decoder,
    check_encoder,
    check_plugin,
)

HOP = 320  # samples per frame: 50 frames/s at 16 kHz


def _mask(lengths: torch.Tensor, t: int) -> torch.Tensor:
    return torch.arange(t, device=lengths.device)[None] < lengths[:, None]  # (b, t)


# ----------------------------------------------------------------------------- toy encoder


class ToyEncoder(nn.Module):
    """Cuts the waveform into HOP-sample frames and projects each: no frame sees another."""

    frame_rate_hz = 50.0
    sample_rate = 16000

    def __init__(self, dim: int = 8) -> None:
        super().__init__()
        self.output_dim = dim
        self.freeze_groups = {"proj": ["proj."]}
        self.proj = nn.Linear(HOP, dim)

    def output_lengths(self, sample_lengths: torch.Tensor) -> torch.Tensor:
        return sample_lengths // HOP

    def features(self, waveforms: torch.Tensor) -> torch.Tensor:
        t = waveforms.shape[1] // HOP
        return self.proj(waveforms[:, : t * HOP].reshape(len(waveforms), t, HOP))  # (b, t, d)

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> EncoderOutput:
        hidden = self.features(waveforms)
        out_lengths = lengths // HOP
        hidden = hidden.masked_fill(~_mask(out_lengths, hidden.shape[1])[..., None], 0.0)
        return EncoderOutput(hidden, out_lengths)

    def export_options(self, folder: Path) -> dict[str, Any]:
        return {"dim": self.output_dim}


class TimeNormEncoder(ToyEncoder):
    """Broken: subtracts the mean over the whole padded time axis."""

    def features(self, waveforms: torch.Tensor) -> torch.Tensor:
        hidden = super().features(waveforms)
        return hidden - hidden.mean(dim=1, keepdim=True)


class DetachedEncoder(ToyEncoder):
    def features(self, waveforms: torch.Tensor) -> torch.Tensor:
        return super().features(waveforms).detach()


class UnmaskedEncoder(ToyEncoder):
    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> EncoderOutput:
        return EncoderOutput(self.features(waveforms), lengths // HOP)


class UnusedLayerEncoder(ToyEncoder):
    def __init__(self) -> None:
        super().__init__()
        self.unused = nn.Linear(2, 2)


class NanGradEncoder(ToyEncoder):
    def features(self, waveforms: torch.Tensor) -> torch.Tensor:
        hidden = super().features(waveforms)
        return hidden + torch.sqrt(self.proj.bias.sum() * 0.0)  # adds 0, but d sqrt(0) = inf: NaN grad


# ----------------------------------------------------------------------------- toy bridge


class ToyBridge(nn.Module):
    """Keeps every second frame and projects it; optionally a CTC head over all frames."""

    def __init__(self, in_dim: int, out_dim: int, ctc_vocab: int = 0) -> None:
        super().__init__()
        self.in_dim, self.out_dim = in_dim, out_dim
        self.freeze_groups = {"proj": ["proj."]}
        self.proj = nn.Linear(in_dim, out_dim)
        self.ctc = nn.Linear(in_dim, ctc_vocab) if ctc_vocab else None

    def output_lengths(self, frame_lengths: torch.Tensor) -> torch.Tensor:
        return (frame_lengths + 1) // 2

    def pooled(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden[:, ::2]

    def forward(self, hidden: torch.Tensor, lengths: torch.Tensor) -> BridgeOutput:
        x = self.proj(self.pooled(hidden))  # (b, n, out_dim)
        n = (lengths + 1) // 2
        x = x.masked_fill(~_mask(n, x.shape[1])[..., None], 0.0)
        ctc = self.ctc(hidden) if self.ctc is not None else None
        return BridgeOutput(x, n, ctc, lengths if ctc is not None else None)

    def export_options(self, folder: Path) -> dict[str, Any]:
        return {}


class TimeNormBridge(ToyBridge):
    def pooled(self, hidden: torch.Tensor) -> torch.Tensor:
        x = super().pooled(hidden)
        return x - x.mean(dim=1, keepdim=True)


class OverlongBridge(ToyBridge):
    def output_lengths(self, frame_lengths: torch.Tensor) -> torch.Tensor:
        return frame_lengths // 4


class BlockingBridge(ToyBridge):
    """Broken: its output does not depend on the input, so the encoder could never train."""

    def pooled(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(super().pooled(hidden))


# ----------------------------------------------------------------------------- toy decoder


class CharTokenizer:
    chars = " abcdefghijklmnopqrstuvwxyz"
    bos_id, eos_id, pad_id = 1, 2, 0
    vocab_size = len(chars) + 3

    def encode(self, text: str) -> list[int]:
        return [self.chars.index(c) + 3 for c in text]

    def decode(self, ids: list[int]) -> str:
        return "".join(self.chars[i - 3] for i in ids if i >= 3)

    def save(self, folder: Path) -> dict[str, Any]:
        return {}


class ToyDecoder(nn.Module):
    """Causal running mean of (token + position) embeddings over unmasked positions, then a head."""

    def __init__(self, dim: int = 8, tokenizer: Any = None) -> None:
        super().__init__()
        self.tokenizer = tokenizer or CharTokenizer()
        self.embed_dim, self.vocab_size = dim, self.tokenizer.vocab_size
        self.lora_targets = ["head"]
        self.freeze_groups = {"embeddings": ["tokens.", "positions."]}
        self.tokens = nn.Embedding(self.vocab_size, dim)
        self.positions = nn.Embedding(64, dim)
        self.head = nn.Linear(dim, self.vocab_size)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.tokens(ids)

    def mixed(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask[..., None].to(x.dtype)  # (b, l_all, 1)
        return (x * m).cumsum(1) / m.cumsum(1).clamp(min=1)

    def forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor,
                position_ids: torch.Tensor, cache: Any = None) -> DecoderOutput:
        x = inputs_embeds + self.positions(position_ids)  # (b, l, d)
        values = x if cache is None else torch.cat([cache, x], dim=1)  # (b, l_all, d)
        h = self.mixed(values, attention_mask)[:, -x.shape[1] :]
        return DecoderOutput(self.head(torch.tanh(h)), values)

    def export_options(self, folder: Path) -> dict[str, Any]:
        return {"dim": self.embed_dim}


class MaskBlindDecoder(ToyDecoder):
    def mixed(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return super().mixed(x, torch.ones_like(mask))


class NoCacheDecoder(ToyDecoder):
    def forward(self, *args: Any, **kwargs: Any) -> DecoderOutput:
        return DecoderOutput(super().forward(*args, **kwargs).logits, None)


class UpperTokenizer(CharTokenizer):
    def decode(self, ids: list[int]) -> str:
        return super().decode(ids).upper()


# ----------------------------------------------------------------------------- check_encoder


def test_correct_encoder_passes_and_is_left_as_found() -> None:
    encoder = ToyEncoder()
    encoder.train()
    encoder.proj.bias.grad = marker = torch.ones(8)
    rng = torch.get_rng_state()
    check_encoder(encoder)
    assert encoder.training
    assert encoder.proj.bias.grad is marker and encoder.proj.weight.grad is None
    assert torch.equal(torch.get_rng_state(), rng)


def test_check_runs_under_an_outer_no_grad() -> None:
    with torch.no_grad():
        check_encoder(ToyEncoder())


@pytest.mark.parametrize(
    ("encoder", "check", "detail"),
    [
        (TimeNormEncoder(), "padding invariance", "alone vs in a padded batch"),
        (DetachedEncoder(), "gradient flow", "do not require grad"),
        (UnmaskedEncoder(), "zero padding", "hidden[0, 25:] is not zero"),
        (UnusedLayerEncoder(), "gradient flow", "unused.weight, unused.bias"),
        (NanGradEncoder(), "gradient flow", "NaN or inf"),
    ],
    ids=lambda v: v if isinstance(v, str) else type(v).__name__,
)
def test_broken_encoder_fails_with_its_check_named(encoder: nn.Module, check: str, detail: str) -> None:
    with pytest.raises(ConformanceError, match=f"^{type(encoder).__name__}: {check} failed") as info:
        check_encoder(encoder)
    assert detail in str(info.value)


def test_unused_parameters_can_be_ignored_or_allowed() -> None:
    check_encoder(UnusedLayerEncoder(), ignore=("unused.",))
    check_encoder(UnusedLayerEncoder(), require_all_grads=False)


def test_wrong_declared_dim_fails_shape_check() -> None:
    encoder = ToyEncoder()
    encoder.output_dim = 9
    with pytest.raises(ConformanceError, match=r"ToyEncoder: output shape failed: .*expected \(b=2, t, 9\)"):
        check_encoder(encoder)


def test_lengths_must_match_output_lengths() -> None:
    encoder = ToyEncoder()
    encoder.output_lengths = lambda n: n // HOP - 1  # type: ignore[method-assign]
    with pytest.raises(ConformanceError, match="output lengths failed: forward gave"):
        check_encoder(encoder)


@pytest.mark.parametrize(
    ("attribute", "value", "detail"),
    [
        ("sample_rate", 16000.0, "'sample_rate' is float"),
        ("output_dim", True, "'output_dim' is bool"),
        ("output_dim", 0, "must be positive"),
        ("freeze_groups", {"proj": ["nope."]}, "prefix 'nope.' of group 'proj' matches no parameter"),
        ("freeze_groups", {"proj": "proj."}, "must map a str to a list of str"),
    ],
)
def test_bad_attributes_fail(attribute: str, value: object, detail: str) -> None:
    encoder = ToyEncoder()
    setattr(encoder, attribute, value)
    with pytest.raises(ConformanceError, match="^ToyEncoder: ") as info:
        check_encoder(encoder)
    assert detail in str(info.value)


def test_missing_attribute_and_non_module_fail() -> None:
    encoder = ToyEncoder()
    del encoder.freeze_groups
    with pytest.raises(ConformanceError, match="missing attribute 'freeze_groups'"):
        check_encoder(encoder)
    with pytest.raises(ConformanceError, match="str: module type failed"):
        check_encoder("not a module")  # type: ignore[arg-type]


def test_export_options_must_return_a_dict() -> None:
    encoder = ToyEncoder()
    encoder.export_options = lambda folder: ["dim"]  # type: ignore[method-assign]
    with pytest.raises(ConformanceError, match="export_options failed: returned list"):
        check_encoder(encoder)


def test_a_crash_in_forward_is_reported_with_its_cause() -> None:
    encoder = ToyEncoder()
    encoder.features = lambda w: 1 / 0  # type: ignore[method-assign]
    with pytest.raises(ConformanceError, match="forward failed: raised ZeroDivisionError") as info:
        check_encoder(encoder)
    assert isinstance(info.value.__cause__, ZeroDivisionError)


# ----------------------------------------------------------------------------- check_bridge


def test_correct_bridges_pass() -> None:
    check_bridge(ToyBridge(16, 24))
    check_bridge(ToyBridge(16, 24, ctc_vocab=30), frames=(5, 9, 7))


@pytest.mark.parametrize(
    ("bridge", "check"),
    [
        (TimeNormBridge(16, 24), "padding invariance"),
        (OverlongBridge(16, 24), "output lengths"),
        (BlockingBridge(16, 24), "gradient flow"),
    ],
    ids=lambda v: v if isinstance(v, str) else type(v).__name__,
)
def test_broken_bridge_fails_with_its_check_named(bridge: nn.Module, check: str) -> None:
    with pytest.raises(ConformanceError, match=f"^{type(bridge).__name__}: {check} failed"):
        check_bridge(bridge)


def test_bridge_gradient_must_reach_its_input() -> None:
    with pytest.raises(ConformanceError, match="no gradient reaches the input hidden"):
        check_bridge(BlockingBridge(16, 24))


def test_ctc_head_gets_gradient_through_ctc_logits() -> None:
    # the CTC head is used only by ctc_logits: without them in the loss it would look unused
    bridge = ToyBridge(16, 24, ctc_vocab=30)
    check_bridge(bridge)
    bridge.extra = nn.Linear(2, 2)
    with pytest.raises(ConformanceError, match="got no gradient: extra.weight, extra.bias"):
        check_bridge(bridge)


# ----------------------------------------------------------------------------- check_decoder


def test_correct_decoder_passes() -> None:
    decoder = ToyDecoder()
    check_decoder(decoder)
    check_decoder(decoder, seq_lengths=(1, 6, 3))


def test_decoder_that_ignores_the_mask_fails_left_padding() -> None:
    with pytest.raises(ConformanceError, match="^MaskBlindDecoder: padding invariance failed: item 0: logits"):
        check_decoder(MaskBlindDecoder())


def test_decoder_that_ignores_position_ids_fails() -> None:
    decoder = ToyDecoder()
    decoder.positions.forward = lambda ids: decoder.positions.weight[: ids.shape[1]][None]  # type: ignore
    with pytest.raises(ConformanceError, match="ToyDecoder: padding invariance failed"):
        check_decoder(decoder)


def test_decoder_without_cache_fails_unless_cache_check_is_off() -> None:
    with pytest.raises(ConformanceError, match="NoCacheDecoder: kv cache failed: forward returned cache=None"):
        check_decoder(NoCacheDecoder())
    check_decoder(NoCacheDecoder(), check_cache=False)


def test_decoder_with_wrong_vocab_size_fails() -> None:
    decoder = ToyDecoder()
    decoder.head = nn.Linear(8, 29)
    with pytest.raises(ConformanceError, match=r"output shape failed: logits are \(2, 8, 29\), expected \(2, 8, 30\)"):
        check_decoder(decoder)


def test_decoder_tokenizer_must_round_trip() -> None:
    with pytest.raises(ConformanceError, match="tokenizer round trip failed: .*'HELLO WORLD'"):
        check_decoder(ToyDecoder(tokenizer=UpperTokenizer()))
    decoder = ToyDecoder()
    decoder.tokenizer = None  # described without tokenizer files: allowed
    check_decoder(decoder)


def test_decoder_lora_targets_must_be_strings() -> None:
    decoder = ToyDecoder()
    decoder.lora_targets = "head"  # type: ignore[assignment]
    with pytest.raises(ConformanceError, match="'lora_targets' must be a list of str"):
        check_decoder(decoder)


def test_decoder_gradient_must_reach_inputs_embeds() -> None:
    decoder = ToyDecoder()
    decoder.forward = lambda e, m, p, c=None: ToyDecoder.forward(decoder, e.detach(), m, p, c)  # type: ignore
    with pytest.raises(ConformanceError, match="ToyDecoder: gradient flow failed"):
        check_decoder(decoder, require_all_grads=False)


# ----------------------------------------------------------------------------- registered components


class ToyOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dim: int = 8


class LooseOptions(BaseModel):
    dim: int = 8


class ToyPlugin:
    """A plugin object registering one component of each kind (and a broken bridge)."""

    def __init__(self, broken_bridge: bool = False) -> None:
        self.broken_bridge = broken_bridge

    @hookimpl
    def register_encoders(self, register: Any) -> None:
        register("toy-encoder", lambda o, ctx: ToyEncoder(o.dim), options=ToyOptions)

    @hookimpl
    def register_bridges(self, register: Any) -> None:
        cls = TimeNormBridge if self.broken_bridge else ToyBridge
        register("toy-bridge", lambda o, ctx: cls(ctx.require("in_dim"), ctx.require("out_dim")),
                 aliases=("tb",))

    @hookimpl
    def register_decoders(self, register: Any) -> None:
        register("toy-decoder", lambda o, ctx: ToyDecoder(o.dim), options=ToyOptions)


EXAMPLES = {"encoder:toy-encoder": {"dim": 4}, "bridge:toy-bridge": {}, "decoder:toy-decoder": {}}


def _plugins(*plugins: tuple[str, object]) -> PluginSet:
    return load_plugins(list(plugins), registry_files=[])


def test_check_component_builds_with_default_context_and_returns_the_module() -> None:
    plugin_set = _plugins(("toy", ToyPlugin()))
    bridge = check_component("bridge", "tb", {}, plugin_set=plugin_set)
    assert (bridge.in_dim, bridge.out_dim) == (16, 24)
    encoder = check_component("encoder", "toy-encoder", {"dim": 4}, plugin_set=plugin_set)
    assert encoder.output_dim == 4
    ctx = BuildContext(in_dim=5, out_dim=7)
    assert check_component("bridge", "toy-bridge", {}, plugin_set=plugin_set, ctx=ctx).out_dim == 7


def test_check_component_refuses_loose_options_and_ignored_sizes() -> None:
    class Loose:
        @hookimpl
        def register_bridges(self, register: Any) -> None:
            register("loose", lambda o, ctx: ToyBridge(16, 24), options=LooseOptions)
            register("fixed", lambda o, ctx: ToyBridge(16, 8))

    plugin_set = _plugins(("loose", Loose()))
    with pytest.raises(ConformanceError, match="LooseOptions: options model failed: .*extra='forbid'"):
        check_component("bridge", "loose", {}, plugin_set=plugin_set)
    with pytest.raises(ConformanceError, match="out_dim is 8 but the context supplied 24"):
        check_component("bridge", "fixed", {}, plugin_set=plugin_set)


def test_check_plugin_passes_a_correct_plugin() -> None:
    built = check_plugin("toy", EXAMPLES, _plugins(("toy", ToyPlugin())))
    assert sorted(built) == sorted(EXAMPLES)


def test_check_plugin_accepts_example_objects() -> None:
    examples: dict[str, Any] = {**EXAMPLES, "bridge:toy-bridge": Example(ctx=BuildContext(in_dim=3, out_dim=5))}
    built = check_plugin("toy", examples, _plugins(("toy", ToyPlugin())))
    assert built["bridge:toy-bridge"].in_dim == 3


def test_check_plugin_requires_an_example_per_component() -> None:
    examples = {k: v for k, v in EXAMPLES.items() if k != "decoder:toy-decoder"}
    with pytest.raises(ConformanceError, match=r"examples missing for \['decoder:toy-decoder'\]"):
        check_plugin("toy", examples, _plugins(("toy", ToyPlugin())))
    with pytest.raises(ConformanceError, match=r"not registered by it: \['bridge:tb'\]"):
        check_plugin("toy", {**EXAMPLES, "bridge:tb": {}}, _plugins(("toy", ToyPlugin())))


def test_check_plugin_lists_every_failing_component() -> None:
    examples = {**EXAMPLES, "encoder:toy-encoder": {"dimm": 4}}
    with pytest.raises(ConformanceError, match="2 of 3 components failed") as info:
        check_plugin("toy", examples, _plugins(("toy", ToyPlugin(broken_bridge=True))))
    message = str(info.value)
    assert "encoder:toy-encoder:" in message and "dimm" in message
    assert "bridge:toy-bridge: TimeNormBridge: padding invariance failed" in message


def test_check_plugin_reports_missing_and_broken_plugins() -> None:
    class Exploding:
        @hookimpl
        def register_bridges(self, register: Any) -> None:
            raise RuntimeError("boom")

    plugin_set = _plugins(("toy", ToyPlugin()), ("bad", Exploding()))
    with pytest.raises(ConformanceError, match="plugin 'nope' is not loaded .loaded: toy, bad."):
        check_plugin("nope", {}, plugin_set)
    with pytest.raises(ConformanceError, match="plugin 'bad' failed to load: register_bridges failed"):
        check_plugin("bad", {}, plugin_set)


def test_check_plugin_uses_the_process_wide_plugins_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    import nue_core.plugins

    monkeypatch.setattr(nue_core.plugins, "_DEFAULT", _plugins(("toy", ToyPlugin())))
    assert sorted(check_plugin("toy", EXAMPLES)) == sorted(EXAMPLES)


def test_decoder_with_a_cache_that_forgets_fails() -> None:
    class ForgetfulDecoder(ToyDecoder):
        def forward(self, e: torch.Tensor, m: torch.Tensor, p: torch.Tensor, cache: Any = None) -> DecoderOutput:
            out = super().forward(e, m[:, -e.shape[1] :] if cache is not None else m, p, None)
            return DecoderOutput(out.logits, out.cache)

    with pytest.raises(ConformanceError, match="ForgetfulDecoder: kv cache failed: a step with the cache differs"):
        check_decoder(ForgetfulDecoder())
