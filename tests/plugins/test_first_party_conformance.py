"""Every first-party component passes the conformance kit, through the installed entry points."""

from nue_core.testing import Example, check_plugin
from tests.conftest import TINY_BRIDGES, TINY_DECODER_CONFIGS, TINY_ENCODER_CONFIG

# SpecAugment's mask embedding is only used in training mode; the kit runs in eval mode.
_SPEC_AUGMENT = ("model.masked_spec_embed",)


def test_nue_hf_conforms():
    examples = {
        "encoder:hubert": Example(options={"config": TINY_ENCODER_CONFIG}, ignore=_SPEC_AUGMENT),
        "encoder:wav2vec2": Example(
            options={"config": {**TINY_ENCODER_CONFIG, "feat_extract_norm": "layer"}, "layer": "weighted"},
            ignore=_SPEC_AUGMENT,
        ),
        **{f"decoder:{name}": {"config": cfg, "tokenizer": "byte"} for name, cfg in TINY_DECODER_CONFIGS.items()},
    }
    check_plugin("nue_hf", examples)


def test_nue_bridges_conforms():
    examples = {
        "bridge:conv": TINY_BRIDGES["conv+ctc"],
        "bridge:qformer": TINY_BRIDGES["qformer-window"],
        "bridge:ctc-compress": {**TINY_BRIDGES["ctc-compress"], "merge": "weighted"},
    }
    check_plugin("nue_bridges", examples)
