"""``nue compose``: validate a model, describe it (parameters per part, prompt length), save it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch
import typer
from rich.console import Console
from rich.table import Table

from nue_core.cli import app
from nue_core.cli._output import check_output
from nue_core.config import KINDS
from nue_core.errors import ConfigError, reading, writing
from nue_core.overrides import parse_override, set_dotted

DEFAULT_PARTS = {"encoder": "hubert", "bridge": "conv", "decoder": "gpt-neox"}


@app.command()
def compose(
    encoder: Optional[str] = typer.Option(None, "--encoder", "-e", help="encoder name or alias"),
    bridge: Optional[str] = typer.Option(None, "--bridge", help="bridge name or alias (no short form: -b is --batch-size in nue)"),
    decoder: Optional[str] = typer.Option(None, "--decoder", "-d", help="decoder name or alias"),
    preset: Optional[str] = typer.Option(None, "--preset", "-p", help="start from a registry.yaml preset"),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="start from a model YAML file"),
    override: list[str] = typer.Option([], "--set", "-s", help="dotted override, e.g. decoder.lora.r=8"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="build with weights and save a model folder here"),
    show_yaml: bool = typer.Option(False, "--yaml", help="print the resolved config"),
) -> None:
    """Compose a model from parts. Without -o nothing is downloaded or loaded: the model is built
    on the meta device from known architecture configs, only to be described."""
    from nue_core.checkpoint import save_model
    from nue_core.composer import compose as build
    from nue_core.composer import resolve_config
    from nue_core.config import ModelConfig

    if output is not None:  # before building: a model is large, the check is free
        check_output(output, folder=True)
    data = _base_config(preset, config)
    for kind, name in (("encoder", encoder), ("bridge", bridge), ("decoder", decoder)):
        if name:
            data[kind] = {"name": name}
    for text in override:
        data = set_dotted(data, *parse_override(text))
    resolved = resolve_config(ModelConfig.from_dict(data, source="nue compose"))
    model = build(resolved, describe=output is None)
    console = Console()
    if show_yaml:
        console.print(resolved.to_yaml(), markup=False)
    console.print(describe_table(model))
    console.print(f"prompt length: {prompt_tokens_per_second(model)} LLM tokens per second of audio")
    if output is not None:
        with writing(output):
            save_model(model, output)
        console.print(f"saved model folder: {output}")


def _base_config(preset: Optional[str], config: Optional[Path]) -> dict[str, Any]:
    from nue_core.plugins import get_plugins

    if preset and config:
        raise ConfigError("give --preset or --config, not both")
    if preset:
        presets = get_plugins().presets
        if preset not in presets:
            raise ConfigError(f"unknown preset '{preset}'; presets: {', '.join(sorted(presets))}")
        return dict(presets[preset])
    if config:
        from nue_core.config import read_yaml_mapping

        with reading(config):
            return read_yaml_mapping(config, "config", "a mapping with encoder/bridge/decoder keys", empty={})
    return dict(DEFAULT_PARTS)


def describe_table(model: torch.nn.Module) -> Table:
    """Parameters per part (total / trainable) as a rich table."""
    from nue_core.trainability import count_parameters

    table = Table(title="nue model")
    for column in ("part", "component", "parameters", "trainable"):
        table.add_column(column, justify="right" if column in ("parameters", "trainable") else "left")
    grand = [0, 0]
    for part in KINDS:
        total, trainable = count_parameters(getattr(model, part))
        grand[0] += total
        grand[1] += trainable
        table.add_row(part, getattr(model.config, part).name, _human(total), _human(trainable))
    table.add_row("total", "", _human(grand[0]), _human(grand[1]), style="bold")
    return table


def prompt_tokens_per_second(model: Any, seconds: float = 10.0) -> str:
    """LLM prompt tokens per second of audio (speech vectors + the text prompt averaged over ``seconds``)."""
    samples = torch.tensor([int(seconds * model.encoder.sample_rate)])
    speech = int(model.bridge.output_lengths(model.encoder.output_lengths(samples))[0])
    if model.tokenizer is None:  # described offline without tokenizer files
        text = "text prompt not counted: tokenizer not at hand"
    else:
        text = f"+{len(model.prefix_ids) + len(model.postfix_ids)} text tokens"
    # Compressing bridges (ctc-compress) only know an upper bound before they see the audio.
    bound = "at most " if getattr(model.bridge, "length_depends_on_content", False) else ""
    return f"{bound}{speech / seconds:.1f} ({text})"


def _human(count: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= size:
            return f"{count / size:.2f}{unit}"
    return str(count)
