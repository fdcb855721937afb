"""``nue serve MODEL [--model NAME=PATH ...]``: an OpenAI-compatible transcription server.

``POST /v1/audio/transcriptions`` as OpenAI's API takes it, ``GET /v1/models``, ``GET /health``
and ``GET /metrics``; each model has its own continuous-batching engine. See docs/serving.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

import typer

from nue_core.cli import app


@app.command()
def serve(
    model: str = typer.Argument(..., help="model folder, preset, 'default', released Nue-ASR folder or hub id; "
                                          "served under its folder name ('default' for the embedded model)"),
    models: list[str] = typer.Option(None, "--model", help="NAME=PATH: serve another model under NAME (repeat it)"),
    host: str = typer.Option("127.0.0.1", "--host", help="address to listen on; a non-loopback one needs --api-key "
                                                        "(or --allow-no-key)"),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="TCP port"),
    api_key: Optional[str] = typer.Option(None, "--api-key", envvar="NUE_API_KEY", show_envvar=True,
                                          help="bearer token every /v1/ request must carry"),
    allow_no_key: bool = typer.Option(False, "--allow-no-key", help="serve a non-loopback --host without an API key "
                                                                    "(a proxy in front does the access control)"),
    max_upload_mb: float = typer.Option(100.0, "--max-upload-mb", min=0.001, help="larger uploads answer 413"),
    max_audio_seconds: float = typer.Option(10800.0, "--max-audio-seconds", min=0.1,
                                            help="longer audio answers 413"),
    max_rows: int = typer.Option(64, "--max-rows", min=1, help="decoding rows per model's running batch"),
    max_queued_seconds: float = typer.Option(3600.0, "--max-queued-seconds", min=0.1,
                                             help="audio waiting per model beyond which requests answer 429"),
    drain_timeout: Optional[float] = typer.Option(None, "--drain-timeout", min=0.0,
                                                  help="on SIGTERM, seconds to wait for running requests "
                                                       "(default: until they finish)"),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda, cuda:1 ... (default: GPU if any)"),
    dtype: Optional[str] = typer.Option("auto", "--dtype", help="auto | float32 | bfloat16 | float16 (auto: as "
                                                                "nue transcribe; float32 on a CPU without native "
                                                                "bfloat16; says on stderr what it picked)"),
    quantize: Optional[str] = typer.Option(None, "--quantize", help="int8: the decoder's linear layers in int8 "
                                                                    "(CPU only)"),
) -> None:
    """Serve models over HTTP with OpenAI's transcription API (stops cleanly on SIGTERM)."""
    from nue_core.inference.engine import EngineLimits
    from nue_core.serve.security import bind_notice
    from nue_core.serve.server import run_server
    from nue_core.serve.settings import ServeSettings

    sources = {served_name(model): model}
    for spec in models or []:
        name, sep, path = spec.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise typer.BadParameter(f"'{spec}': expected NAME=PATH", param_hint="'--model'")
        if name.strip() in sources:
            raise typer.BadParameter(f"the name '{name.strip()}' is given twice", param_hint="'--model'")
        sources[name.strip()] = path.strip()
    _check_precision(dtype, quantize, device)  # exit 2 before anything loads
    notice = bind_notice(host, api_key or None, allow_no_key)  # ConfigError -> exit 2 before anything loads
    if notice:
        typer.secho(notice, fg="yellow" if notice.startswith("WARNING") else None, err=True)
    settings = ServeSettings(api_key=api_key or None, max_upload_bytes=int(max_upload_mb * 2**20),
                             max_audio_seconds=max_audio_seconds, drain_timeout=drain_timeout)
    limits = EngineLimits(max_rows=max_rows, max_queued_seconds=max_queued_seconds)
    loaders = {name: _loader(source, device, dtype, quantize) for name, source in sources.items()}
    run_server(loaders, host=host, port=port, settings=settings, limits=limits)


def served_name(source: str) -> str:
    """The name a positional MODEL is served under: its folder's name, or the name itself."""
    path = Path(source).expanduser()
    return path.resolve().name if path.is_dir() else (source.rstrip("/").rpartition("/")[2] or "default")


def _check_precision(dtype: Optional[str], quantize: Optional[str], device: Optional[str]) -> None:
    from nue_core.inference.runner import RunOptions, pick_device
    from nue_core.errors import NueError

    try:
        RunOptions(device=device, dtype=dtype, quantize=quantize)
    except NueError as exc:
        raise typer.BadParameter(str(exc),
                                 param_hint="'--quantize'" if "quantize" in str(exc) else "'--dtype'") from None
    if quantize is not None and not pick_device(device).startswith("cpu"):
        raise typer.BadParameter(f"{quantize} runs on the CPU only: add --device cpu", param_hint="'--quantize'")


def _loader(source: str, device: Optional[str], dtype: Optional[str], quantize: Optional[str] = None
            ) -> Callable[[], Any]:
    def load() -> Any:
        from nue_core.dtypes import AUTO, apply_precision
        from nue_core.inference.runner import load_model, pick_device

        model = load_model(source)
        plan = apply_precision(model, dtype, pick_device(device), quantize)
        if plan is not None and (dtype == AUTO or quantize is not None):
            typer.echo(f"{served_name(source)}: {plan.describe()}", err=True)
        return model.eval()

    return load
