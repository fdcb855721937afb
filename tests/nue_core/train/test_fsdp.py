"""FSDP2 on two CPU processes (gloo) through torchrun: the run shards, trains, validates, saves a
loadable final/, ends where DDP ends, and a run resumed from its mid-run checkpoint ends
bit-identical, optimizer state included."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from nue_core.checkpoint import load_model_folder, read_state_dict
from tests.conftest import tiny_config
from tests.nue_core.train.conftest import make_dataset
from tests.nue_core.train.test_ddp import _free_port

REPO = Path(__file__).resolve().parents[3]
WORKER = Path(__file__).with_name("fsdp_worker.py")


def _model_yaml(path: Path, frozen_encoder_lora: bool) -> Path:
    config = tiny_config()
    # SpecAugment on: ranks mask different frames, so the mask embedding gets a gradient on some
    # ranks only (the reduce must still match); LayerDrop (HuBERT's default 0.1) must be off under FSDP.
    config["encoder"]["config"].update(mask_time_prob=0.3, mask_time_length=2, layerdrop=0.5)
    if frozen_encoder_lora:  # as the paper trains: encoder frozen, LoRA on the decoder
        config["encoder"]["trainable"] = False
        config["decoder"]["lora"] = {"r": 4, "alpha": 8}
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def _run_worker(model: Path, train: Path, valid: Path, out: Path) -> list[dict]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), str(WORKER), str(model), str(train), str(valid), str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    # a rank out of step with the other (a collective mismatch) hangs: the timeout ends it
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return [json.loads((out / f"report{r}.json").read_text()) for r in range(2)]


@pytest.mark.slow
@pytest.mark.parametrize("frozen_encoder_lora", [False, True], ids=["full", "frozen-encoder-lora"])
def test_fsdp_trains_saves_and_resumes_bit_exactly(tmp_path: Path, frozen_encoder_lora: bool) -> None:
    train = make_dataset(tmp_path / "train", 12, seed=1)
    valid = make_dataset(tmp_path / "valid", 3, seed=2)
    model = _model_yaml(tmp_path / "model.yaml", frozen_encoder_lora)
    out = tmp_path / "runs"
    main, other = _run_worker(model, train, valid, out)

    assert main["world"] == other["world"] == 2 and "MULTI_CPU" in main["distributed"]
    assert main["sharded"] and other["sharded"]
    # each rank holds about half of every tensor (FSDP pads uneven first dimensions)
    assert main["local_numel"] + other["local_numel"] >= main["global_numel"]
    assert main["local_numel"] < 0.6 * main["global_numel"]
    assert main["trained"] and main["best"]
    assert main["final_is_gathered"]  # final/ loads as a model holding the gathered weights
    assert main["resumed"] and other["resumed"]
    assert main["optimizer_restored"]  # AdamW moments and steps gathered back bit for bit

    a, b = out / "a", out / "b"
    final_a, final_b = read_state_dict(a / "final" / "model.safetensors"), read_state_dict(b / "final" / "model.safetensors")
    assert final_a.keys() == final_b.keys()
    assert all(torch.equal(final_a[k], final_b[k]) for k in final_a), "resumed run ended with other weights"
    last = f"checkpoints/step-{4:08d}"
    opt_a, opt_b = read_state_dict(a / last / "optimizer.safetensors"), read_state_dict(b / last / "optimizer.safetensors")
    assert opt_a.keys() == opt_b.keys() and all(torch.equal(opt_a[k], opt_b[k]) for k in opt_a)

    loaded = load_model_folder(a / "final")  # the normal loader: a plain, unsharded model
    trainable = {n for n, p in loaded.named_parameters() if p.requires_grad}
    if frozen_encoder_lora:
        assert trainable and all("lora_" in n or not n.startswith(("encoder.", "decoder.")) for n in trainable)
        # only trainable parameters have optimizer state: LoRA adapters and the bridge
        assert len({k.split(".")[1] for k in opt_a}) == len(trainable)
    # the same arithmetic as DDP: a silent mix-up (ranks gathering different blocks, LayerDrop
    # left on) would be far off; the two differ only in the order of float sums (max 1e-6 seen)
    reference = read_state_dict(out / "ddp" / "final" / "model.safetensors")
    assert not main["reference_sharded"]
    assert all(torch.allclose(final_a[k], reference[k], rtol=0, atol=1e-5) for k in final_a)
    first = read_state_dict(a / f"checkpoints/step-{2:08d}" / "model" / "model.safetensors")
    frozen = [k for k in final_a if k.startswith("encoder.")]
    changed = [k for k in final_a if not torch.equal(final_a[k], first[k])]
    assert changed
    if frozen_encoder_lora:
        assert not set(frozen) & set(changed), "a frozen encoder weight changed"
