"""Entry point of the ``example`` plugin (group ``nue``): registers the ``mean-pool`` bridge."""

from typing import Any, Callable

from nue_core import hookimpl


@hookimpl
def register_bridges(register: Callable[..., Any]) -> None:
    # imported here so that listing plugins (`nue plugins`) does not import torch-heavy code
    from nue_plugin_example.mean_pool import MeanPoolBridge, MeanPoolOptions

    register("mean-pool", MeanPoolBridge.from_options, options=MeanPoolOptions, aliases=("avgpool",))
