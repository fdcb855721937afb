"""Run by torchrun in test_fsdp.py: an uninterrupted FSDP run, a second one resumed from the first
one's mid-run checkpoint, and the same run under DDP as a reference; each rank writes what it
checked to ``OUT/report<rank>.json``.

Usage: fsdp_worker.py MODEL_YAML TRAIN VALID OUT
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import torch

STEPS, MIDDLE = 4, 2


def train_config() -> "TrainConfig":  # noqa: F821 (imported late: torchrun starts fast)
    from nue_core.train.config import TrainConfig

    return TrainConfig(max_steps=STEPS, batch_seconds=2.0, warmup_steps=1, lr=3e-3, eval_every=MIDDLE,
                       save_every=MIDDLE, keep_last=STEPS, progress=False, report_to=[], num_workers=0,
                       eval_max_items=2, fsdp=True, seed=0)


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def same_optimizer(a: dict, b: dict) -> bool:
    """Two optimizer states in ``Optimizer.state_dict`` numbering: same parameters, tensors bit for bit."""
    if [g["params"] for g in a["param_groups"]] != [g["params"] for g in b["param_groups"]]:
        return False
    if a["state"].keys() != b["state"].keys():
        return False
    return all(a["state"][i].keys() == b["state"][i].keys()
               and all(torch.equal(torch.as_tensor(v), torch.as_tensor(b["state"][i][n])) for n, v in a["state"][i].items())
               for i in a["state"])


def main(model_yaml: str, train: str, valid: str, out: str) -> None:
    from nue_core.checkpoint import load_model_folder
    from nue_core.train import sharding
    from nue_core.train.checkpointing import read_checkpoint
    from nue_core.train.data import UtteranceSet
    from nue_core.train.run import build_training_model
    from nue_core.train.trainer import Trainer, make_accelerator

    config, root = train_config(), Path(out)
    acc = make_accelerator(config)
    report: dict = {"world": acc.num_processes, "distributed": str(acc.distributed_type)}

    def trainer(run_dir: Path) -> Trainer:
        model = build_training_model(model_yaml, seed=config.seed)
        train_set, _ = UtteranceSet.from_manifest(train, model.sample_rate, 16.0, skip_bad=False)
        valid_set, _ = UtteranceSet.from_manifest(valid, model.sample_rate, 16.0, skip_bad=False)
        return Trainer(model, config, train_set, valid_set, run_dir, accelerator=acc)

    # the uninterrupted run
    first = trainer(root / "a")
    params = [p for p in first.model.parameters()]
    report["sharded"] = sharding.is_sharded(first.model)
    report["local_numel"] = sum(p.to_local().numel() for p in params)  # this rank's shards
    report["global_numel"] = sum(p.numel() for p in params)
    report["trainable"] = sum(p.numel() for p in params if p.requires_grad)
    before = sharding.full_model_state(first.model)
    result = first.fit()
    gathered = sharding.full_model_state(first.model)  # every rank joins; rank 0 holds it
    if acc.is_main_process:
        final = load_model_folder(root / "a" / "final").state_dict()
        report["final_is_gathered"] = same(final, gathered)
        report["trained"] = not same(before, gathered)
        report["best"] = result.best_dir is not None
        shutil.copytree(root / "a" / "checkpoints" / f"step-{MIDDLE:08d}",
                        root / "b" / "checkpoints" / f"step-{MIDDLE:08d}")
    acc.wait_for_everyone()

    # the resumed run: from the uninterrupted run's checkpoint at MIDDLE
    second = trainer(root / "b")
    report["resumed"] = second.resume(say=lambda line: None) and second.state.step == MIDDLE
    restored = sharding.full_optimizer_state(second.model, second.optimizer)
    if acc.is_main_process:
        saved = read_checkpoint(root / "b" / "checkpoints" / f"step-{MIDDLE:08d}")["optimizer"]
        report["optimizer_restored"] = same_optimizer(saved, restored)
    second.fit()

    # the reference: the same run under DDP (LayerDrop off, as FSDP must turn it off)
    config = config.model_copy(update={"fsdp": False})
    model = build_training_model(model_yaml, {"encoder.layerdrop": 0.0}, seed=config.seed)
    train_set, _ = UtteranceSet.from_manifest(train, model.sample_rate, 16.0, skip_bad=False)
    reference = Trainer(model, config, train_set, None, root / "ddp", accelerator=acc)
    report["reference_sharded"] = sharding.is_sharded(reference.model)
    reference.fit()
    report["rank"] = acc.process_index
    (root / f"report{acc.process_index}.json").write_text(json.dumps(report), encoding="utf-8")


if __name__ == "__main__":
    main(*sys.argv[1:5])
