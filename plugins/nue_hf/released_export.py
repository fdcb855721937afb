"""Write a SpeechLM composed of hubert + conv + gpt-neox in the released Nue-ASR layout."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from nue_core.atomic import atomic_folder
from nue_core.errors import ConfigError
from nue_hf.metadata import HF_METADATA_KEYS
from nue_hf.released import MODEL_TYPE, PROMPT, to_released_keys
from nue_hf.tokenizers import SentencePieceTokenizer


def export_problems(model) -> list[str]:  # type: ignore[no-untyped-def]
    """Why the released layout cannot hold ``model`` (empty when it can)."""
    cfg, problems = model.config, []
    for part, name in (("encoder", "hubert"), ("bridge", "conv"), ("decoder", "gpt-neox")):
        if getattr(cfg, part).name != name:
            problems.append(f"{part} is '{getattr(cfg, part).name}', the layout holds only '{name}'")
    if problems:
        return problems
    enc, bridge = model.encoder, model.bridge
    if enc.layer != "last" or enc.normalize_waveform:
        problems.append("encoder must use the last layer of raw (unnormalised) audio")
    if bridge.ctc_blank_id is not None:
        problems.append("the conv bridge has a CTC head, which the layout has no place for")
    opts = cfg.bridge.options
    if opts.get("padding", 0) or opts.get("hidden_dim") not in (None, bridge.in_dim):
        problems.append("the layout's bridge convs have no padding and keep the encoder width")
    if cfg.prompt.model_dump() != PROMPT:
        problems.append(f"prompt must be {PROMPT}, got {cfg.prompt.model_dump()}")
    if not isinstance(model.tokenizer, SentencePieceTokenizer):
        problems.append("the layout needs a sentencepiece tokenizer")
    return problems


def export_released(model, folder: Path) -> Path:  # type: ignore[no-untyped-def]
    """Write ``model`` to ``folder`` in the released layout (LoRA adapters merged into a copy)."""
    import copy

    from nue_core.checkpoint import save_state_dict
    from nue_core.trainability import merge_adapters

    problems = export_problems(model)
    if problems:
        raise ConfigError("cannot export to the nue-asr layout: " + "; ".join(problems))
    model = merge_adapters(copy.deepcopy(model))
    folder = Path(folder)
    with atomic_folder(folder) as tmp:
        _write_tokenizer(model.tokenizer, tmp)
        (tmp / "config.json").write_text(json.dumps(_config_json(model), indent=2), encoding="utf-8")
        save_state_dict(to_released_keys(model.state_dict()), tmp / "model.safetensors")
    return folder


def _config_json(model) -> dict:  # type: ignore[no-untyped-def]
    opts = model.config.bridge.options
    return {
        "model_type": MODEL_TYPE,
        "audio_encoder_config": {k: v for k, v in model.encoder.model.config.to_diff_dict().items() if k not in HF_METADATA_KEYS},
        "llm_config": {k: v for k, v in model.decoder.model.config.to_diff_dict().items() if k not in HF_METADATA_KEYS},
        "bridge_conv_kernel_size": list(opts.get("kernel_sizes", [4, 4])),
        "bridge_conv_stride": list(opts.get("strides", [2, 2])),
    }


def _write_tokenizer(tokenizer: SentencePieceTokenizer, folder: Path) -> None:
    # The layout keeps spiece.model and its json files at the folder root.
    tokenizer.save(folder)
    sub = folder / "tokenizer"
    for item in sub.iterdir():
        shutil.move(str(item), str(folder / item.name))
    sub.rmdir()
