"""check_bridge passes correct toy bridges and names the check a broken one fails."""

from __future__ import annotations

import pytest
from torch import nn

from nue_core.testing import ConformanceError, check_bridge
from tests.nue_core.testing.fakes import BlockingBridge, OverlongBridge, TimeNormBridge, ToyBridge


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
