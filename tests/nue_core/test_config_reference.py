from pathlib import Path

from nue_core.config_reference import render

DOC = Path(__file__).resolve().parents[2] / "docs" / "config.md"


def test_docs_config_reference_is_current():
    expected = render()
    assert DOC.read_text(encoding="utf-8") == expected, (
        "docs/config.md is stale: run `python -m nue_core.config_reference > docs/config.md`"
    )


def test_reference_lists_every_first_party_component_and_field():
    text = render()
    for name in ("hubert", "wav2vec2", "conv", "qformer", "ctc-compress", "gpt-neox", "llama", "hf-causal-lm"):
        assert f"### `{name}`" in text
    for field in ("ctc_weight", "kernel_sizes", "window_frames", "target_modules", "normalize_waveform"):
        assert f"`{field}`" in text
