"""Training: config, data, loop, checkpoints and resume, validation (see docs/training.md)."""

from nue_core.train.config import TrainConfig
from nue_core.train.run import build_training_model, train

__all__ = ["TrainConfig", "build_training_model", "train"]
