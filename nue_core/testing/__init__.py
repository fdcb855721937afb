"""Conformance checks a plugin runs over the components it registers.

A plugin's own test suite needs one call, with tiny options for each component it registers::

    from nue_core.testing import check_plugin

    def test_conformance():
        check_plugin("my_plugin", {"bridge:my-bridge": {"width": 8}})

Each check raises ``ConformanceError`` (an ``AssertionError``, so pytest shows it as a failure)
whose message names the component class, the check that failed and what to do about it.

Besides each part's own checks, the kit runs the part where the core runs it: composed into a
small ``SpeechLM`` with the kit's toy parts (``nue_core.testing.toys``; ``pipeline.toy_speechlm``),
a training step and ``SpeechLM.generate`` greedily and with beams, batched equal to one by one.
Modules: ``encoder``, ``bridge``, ``decoder`` (+ ``kv_cache``) hold the checks of each kind,
``pipeline`` the SpeechLM run, ``plugin`` the registry-driven ``check_plugin``.

Shape legend: b = batch, s = audio samples, t = frames, n = bridge vectors, l = tokens,
d = width, v = vocabulary size.
"""

from __future__ import annotations

# SEED and ROUND_TRIP_TEXT stay importable from here, as before the split, but out of __all__
from nue_core.testing._common import SEED, ConformanceError, Example, default_context
from nue_core.testing.bridge import check_bridge
from nue_core.testing.decoder import ROUND_TRIP_TEXT, check_decoder
from nue_core.testing.encoder import check_encoder
from nue_core.testing.plugin import check_component, check_plugin

__all__ = [
    "ConformanceError",
    "Example",
    "check_bridge",
    "check_component",
    "check_decoder",
    "check_encoder",
    "check_plugin",
    "default_context",
]
