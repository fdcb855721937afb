"""An example third-party nue-asr plugin: the ``mean-pool`` bridge."""

from nue_plugin_example.mean_pool import MeanPoolBridge, MeanPoolOptions

__all__ = ["MeanPoolBridge", "MeanPoolOptions"]
