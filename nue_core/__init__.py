"""nue-asr core: protocols, config, plugins, composer and the SpeechLM model."""

from nue_core.config import ComponentSpec, LoraSpec, ModelConfig, PromptSpec
from nue_core.errors import ConfigError, NueError
from nue_core.hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = [
    "ComponentSpec",
    "ConfigError",
    "LoraSpec",
    "ModelConfig",
    "NueError",
    "PromptSpec",
    "hookimpl",
    "compose",
    "load",
    "transcribe",
]


def __getattr__(name: str):  # lazy: importing nue_core must not import torch-heavy modules
    if name == "compose":
        from nue_core.composer import compose

        return compose
    if name == "load":
        from nue_core.checkpoint import load

        return load
    if name == "transcribe":  # transcribe(model, inputs, **options): see nue_core.inference
        from nue_core.inference.transcriber import transcribe

        return transcribe
    raise AttributeError(name)
