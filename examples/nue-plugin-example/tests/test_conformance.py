"""The example plugin passes nue-asr's conformance kit, and its pooling is right."""

import pytest
import torch

import nue_plugin_example.plugin
from nue_core.plugins import load_plugins
from nue_core.registry import BuildContext
from nue_core.testing import Example, check_plugin
from nue_plugin_example import MeanPoolBridge, MeanPoolOptions

# Tiny options for every component this plugin registers; check_plugin fails if one is missing.
EXAMPLES = {"bridge:mean-pool": {"pool": 3}}


def test_plugin_conforms_in_isolation() -> None:
    # Load only this plugin: other installed plugins cannot interfere with the result.
    plugin_set = load_plugins([("example", nue_plugin_example.plugin)], registry_files=[])
    check_plugin("example", EXAMPLES, plugin_set)


def test_plugin_conforms_through_its_entry_point() -> None:
    # Default plugin set = the installed entry points: this checks pyproject's [project.entry-points.nue].
    check_plugin("example", EXAMPLES)


@pytest.mark.parametrize("pool", [1, 2, 4, 7])
def test_conforms_for_other_pool_sizes(pool: int) -> None:
    plugin_set = load_plugins([("example", nue_plugin_example.plugin)], registry_files=[])
    check_plugin("example", {"bridge:mean-pool": Example(options={"pool": pool})}, plugin_set)


def test_last_partial_window_averages_only_valid_frames() -> None:
    bridge = MeanPoolBridge.from_options(MeanPoolOptions(pool=2), BuildContext(in_dim=1, out_dim=1))
    with torch.no_grad():
        bridge.proj.weight.fill_(1.0)
        bridge.proj.bias.zero_()
    hidden = torch.tensor([[1.0, 3.0, 5.0, 100.0], [2.0, 4.0, 6.0, 8.0]])[..., None]  # (2, 4, 1)
    out = bridge(hidden, torch.tensor([3, 4]))
    assert out.lengths.tolist() == [2, 2]
    assert out.embeds[..., 0].tolist() == [[2.0, 5.0], [3.0, 7.0]]  # 100.0 is padding: ignored
