"""Run by torchrun in test_ddp.py: train a few steps on each rank, write this rank's weight digest."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch


def digest(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def main(model_yaml: str, train: str, out: str) -> None:
    from nue_core.train.config import TrainConfig
    from nue_core.train.data import UtteranceSet
    from nue_core.train.run import build_training_model
    from nue_core.train.trainer import Trainer, make_accelerator

    config = TrainConfig(max_steps=3, batch_seconds=2.0, warmup_steps=1, lr=3e-3, eval_every=100,
                         save_every=100, progress=False, tensorboard=False, seed=0)
    acc = make_accelerator(config)
    model = build_training_model(model_yaml, seed=config.seed)
    before = digest(model)
    data, _ = UtteranceSet.from_manifest(train, model.sample_rate, 16.0, skip_bad=False)
    trainer = Trainer(model, config, data, None, Path(out), accelerator=acc)
    result = trainer.fit()
    record = {"rank": acc.process_index, "world": acc.num_processes, "before": before,
              "after": digest(acc.unwrap_model(trainer.model)), "steps": result.step,
              "distributed": str(acc.distributed_type)}
    (Path(out) / f"rank{acc.process_index}.json").write_text(json.dumps(record), encoding="utf-8")


if __name__ == "__main__":
    main(*sys.argv[1:4])
