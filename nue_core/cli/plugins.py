"""``nue plugins``: what is installed, which hooks each plugin implements, and what is broken.

Problems go to stderr, one line each: a plugin that failed, a component that cannot be built
here (a missing extra), an installed package that does not load (with the fix).
"""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from nue_core.cli import app
from nue_core.errors import one_line


@app.command()
def plugins() -> None:
    """List plugins, their components, aliases and versions, and any plugin that failed to load."""
    from nue_core.plugins import get_plugins
    from nue_core.registry import KINDS

    loaded = get_plugins()
    console = Console()
    table = Table(title="plugins")
    for column in ("plugin", "distribution", "version", "hooks", "status"):
        table.add_column(column)
    for info in loaded.plugins:
        status = f"[red]broken: {escape(info.error)}[/red]" if info.error else "[green]ok[/green]"
        hooks = ", ".join(h.removeprefix("register_") for h in info.hooks)
        table.add_row(info.name, info.distribution, info.version, hooks, status)
    console.print(table)
    for kind in KINDS:
        comp = Table(title=f"{kind}s")
        for column in ("name", "aliases", "plugin", "description"):
            comp.add_column(column)
        for entry in loaded.registry.entries(kind):
            aliases = ", ".join(sorted(set(entry.aliases) | set(loaded.registry.aliases_of(kind, entry.name))))
            text = escape(entry.description)
            if entry.unavailable:
                text = f"[yellow]unavailable: {escape(entry.unavailable)}[/yellow] ({text})"
            comp.add_row(entry.name, aliases, f"{entry.plugin} {entry.version}".strip(), text)
        console.print(comp)
    if loaded.presets:
        console.print("presets: " + ", ".join(sorted(loaded.presets)))
    if loaded.checkpoints:
        console.print("checkpoints: " + ", ".join(f"{k} ({v})" for k, v in sorted(loaded.checkpoints.items())))
    if loaded.loaders or loaded.exporters:
        console.print("folder layouts: load " + ", ".join(l.name for l in loaded.loaders)
                      + "; export " + ", ".join(sorted(loaded.exporters)))
    for info in loaded.broken:
        typer.secho(one_line(f"plugin '{info.name}' ({info.module}) is broken: {info.error}"), fg="red", err=True)
    unavailable: dict[str, list[str]] = {}  # one line per reason, however many components share it
    for kind in KINDS:
        for entry in loaded.registry.entries(kind):
            if entry.unavailable:
                unavailable.setdefault(entry.unavailable, []).append(f"{kind} '{entry.name}'")
    for reason, names in unavailable.items():
        typer.secho(one_line(f"unavailable: {', '.join(names)}: {reason}"), fg="yellow", err=True)
    for problem in loaded.problems:
        typer.secho(one_line(f"warning: {problem}"), fg="yellow", err=True)


