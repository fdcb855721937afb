"""check_encoder passes a correct toy encoder and names the check a broken one fails."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nue_core.testing import ConformanceError, check_encoder
from tests.nue_core.testing.fakes import (
    HOP,
    DetachedEncoder,
    NanGradEncoder,
    ParameterFreeEncoder,
    ShortClipEncoder,
    TimeNormEncoder,
    ToyEncoder,
    UnmaskedEncoder,
    UnusedLayerEncoder,
)


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
        (ShortClipEncoder(), "shortest clip", "a clip of 320 samples, the shortest that output_lengths gives a "
                                              "frame (the transcriber accepts it): forward failed: raised ValueError"),
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


def test_encoder_without_parameters_fails() -> None:
    with pytest.raises(ConformanceError, match="^ParameterFreeEncoder: protocol attributes failed: has no parameter"):
        check_encoder(ParameterFreeEncoder())


def test_encoder_trains_and_generates_in_a_speechlm(monkeypatch: pytest.MonkeyPatch) -> None:
    import nue_core.testing.encoder as kit

    models: list[nn.Module] = []
    real = kit.check_in_speechlm
    monkeypatch.setattr(kit, "check_in_speechlm", lambda c, m, *a, **k: (models.append(m), real(c, m, *a, **k)))
    encoder = ToyEncoder()
    check_encoder(encoder)
    assert models and models[0].encoder is encoder  # type: ignore[union-attr]
    assert models[0].bridge.in_dim == encoder.output_dim  # type: ignore[union-attr]
