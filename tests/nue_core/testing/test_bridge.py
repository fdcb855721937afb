"""check_bridge passes correct toy bridges and names the check a broken one fails."""

from __future__ import annotations

import pytest
from torch import nn

from nue_core.testing import ConformanceError, check_bridge
from tests.nue_core.testing.fakes import (
    BlanklessCtcBridge,
    BlockingBridge,
    OverlongBridge,
    ShortInputBridge,
    TimeNormBridge,
    ToyBridge,
)


def test_correct_bridges_pass() -> None:
    check_bridge(ToyBridge(16, 24))
    check_bridge(ToyBridge(16, 24, ctc_vocab=30), frames=(5, 9, 7))


@pytest.mark.parametrize(
    ("bridge", "check"),
    [
        (TimeNormBridge(16, 24), "padding invariance"),
        (OverlongBridge(16, 24), "output lengths"),
        (BlockingBridge(16, 24), "gradient flow"),
        (BlanklessCtcBridge(), "ctc output"),
        (ShortInputBridge(16, 24), "shortest input"),
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


def test_messages_say_what_to_do() -> None:
    with pytest.raises(ConformanceError, match="ctc_blank_id is None; set ctc_blank_id to the blank class"):
        check_bridge(BlanklessCtcBridge())
    with pytest.raises(ConformanceError, match=r"an input of 1 frame\(s\), the shortest that output_lengths gives a "
                                               "vector .*: forward failed: raised ValueError: need 3 frames"):
        check_bridge(ShortInputBridge(16, 24))


def test_bridge_runs_in_a_speechlm_with_the_kit_toys(monkeypatch: pytest.MonkeyPatch) -> None:
    import nue_core.testing.bridge as kit

    seen: dict[str, object] = {}
    real = kit.check_in_speechlm

    def spy(component: nn.Module, model: nn.Module, *args: object, **kwargs: object) -> None:
        seen.update(model=model, ctc_weight=kwargs["ctc_weight"])
        real(component, model, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(kit, "check_in_speechlm", spy)
    bridge = ToyBridge(16, 24, ctc_vocab=30)
    check_bridge(bridge)
    model = seen["model"]
    assert model.bridge is bridge and model.decoder.vocab_size == 30  # type: ignore[attr-defined]
    assert model.config.ctc_weight > 0 and seen["ctc_weight"] > 0  # type: ignore[attr-defined, operator]
