"""Saving and loading model folders: identical logits, atomic writes, clear errors."""

import pytest
import torch

import nue_core.checkpoint as ckpt
from nue_core.checkpoint import load, save_model
from nue_core.composer import compose
from nue_core.errors import CheckpointError
from tests.conftest import make_audio, tiny_config


def _logits(model):
    wave, lens = make_audio([0.5, 0.3], seed=3)
    with torch.no_grad():
        return model.eval()(wave, lens, model.target_ids(["abc", "de"])).logits


@pytest.mark.parametrize("bridge,decoder", [("conv", "gpt-neox"), ("ctc-compress", "llama"), ("qformer-window", "hf-causal-lm")])
def test_saved_folder_loads_back_with_identical_logits(tmp_path, bridge, decoder):
    torch.manual_seed(0)
    cfg = tiny_config("wav2vec2" if decoder == "llama" else "hubert", bridge, decoder)
    cfg["decoder"]["lora"] = {"r": 2}
    model = compose(cfg)
    with torch.no_grad():  # make LoRA B non-zero so the adapter matters
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_()
    save_model(model, tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) >= ["model.safetensors", "nue.yaml"]
    again = load(tmp_path / "m")
    assert torch.equal(_logits(model), _logits(again))


def test_crash_during_save_keeps_previous_folder(tmp_path, monkeypatch):
    model = compose(tiny_config())
    save_model(model, tmp_path / "m")
    before = (tmp_path / "m" / "model.safetensors").read_bytes()

    def exploding(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt, "save_state_dict", exploding)
    with pytest.raises(OSError, match="disk full"):
        save_model(compose(tiny_config()), tmp_path / "m")
    assert (tmp_path / "m" / "model.safetensors").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no temporary folder left behind
    load(tmp_path / "m")


def test_truncated_weights_give_clear_error(tmp_path):
    save_model(compose(tiny_config()), tmp_path / "m")
    weights = tmp_path / "m" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load(tmp_path / "m")


def test_describe_only_model_cannot_be_saved(tmp_path):
    with pytest.raises(CheckpointError, match="describe"):
        save_model(compose(tiny_config(), describe=True), tmp_path / "m")


def test_unknown_source_lists_presets(tmp_path):
    with pytest.raises(CheckpointError, match="tiny"):
        load("no-such-model")
    with pytest.raises(CheckpointError, match="not a model folder"):
        load(tmp_path)


def test_named_checkpoint_offline_gives_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="rinna/nue-asr"):
        load("nue-asr")


def test_saved_folder_records_whether_its_weights_were_trained(tmp_path):
    """A composed model saved as is (what `nue compose -o` does) loads back untrained; one saved as
    trained, or written by training, loads back trained."""
    model = compose(tiny_config())
    assert model.is_trained is False  # random bridge (and here random everything)
    save_model(model, tmp_path / "composed")
    assert load(tmp_path / "composed").is_trained is False
    save_model(model, tmp_path / "marked", trained=True)
    assert load(tmp_path / "marked").is_trained is True
    save_model(model, tmp_path / "by-training", trained=True, state=model.state_dict())  # as training does
    assert load(tmp_path / "by-training").is_trained is True
    model.is_trained = True  # trained by the user's own loop: save_model records it
    save_model(model, tmp_path / "own-loop")
    assert load(tmp_path / "own-loop").is_trained is True


def test_folder_saved_before_the_marker_counts_as_trained(tmp_path):
    """Existing user folders have no marker in the safetensors header: never warn falsely on them."""
    from safetensors.torch import load_file, save_file

    save_model(compose(tiny_config()), tmp_path / "old")
    weights = tmp_path / "old" / "model.safetensors"
    save_file(load_file(str(weights)), str(weights), metadata={"format": "pt"})  # the header as saved before
    assert load(tmp_path / "old").is_trained is True
    assert load("default").is_trained is True  # the embedded model, trained by the recipe


def test_preset_and_adapter_trained_marker(tmp_path):
    from nue_core.checkpoint import save_adapter
    from nue_core.config import LoraSpec
    from nue_core.trainability import reconfigure

    assert load("tiny").is_trained is False
    save_model(compose(tiny_config()), tmp_path / "base")
    model = load(tmp_path / "base")
    decoder = model.config.decoder.model_copy(update={"lora": LoraSpec(r=2)})
    reconfigure(model, model.config.model_copy(update={"decoder": decoder}))
    save_adapter(model, tmp_path / "adapter", base=tmp_path / "base")
    assert load(tmp_path / "adapter").is_trained is True  # an adapter is what training changed


@pytest.mark.parametrize("fault", ["shape", "bool", "unknown"])
def test_an_adapter_whose_tensors_are_not_the_models_is_refused_naming_them(tmp_path, fault):
    """Before: a wrong shape escaped as torch's size-mismatch RuntimeError, a bool was cast."""
    from safetensors.torch import load_file, save_file

    from nue_core.checkpoint import save_adapter
    from nue_core.config import LoraSpec
    from nue_core.trainability import reconfigure

    save_model(compose(tiny_config()), tmp_path / "base")
    model = load(tmp_path / "base")
    decoder = model.config.decoder.model_copy(update={"lora": LoraSpec(r=2)})
    reconfigure(model, model.config.model_copy(update={"decoder": decoder}))
    save_adapter(model, tmp_path / "adapter", base=tmp_path / "base")
    weights = tmp_path / "adapter" / "adapter.safetensors"
    state = load_file(str(weights))
    name = sorted(state)[0]
    if fault == "unknown":
        name = "decoder.no_such.weight"
        state[name] = torch.zeros(2)
    else:
        state[name] = torch.zeros(3, 1) if fault == "shape" else state[name].bool()
    save_file(state, str(weights))
    with pytest.raises(CheckpointError) as err:
        load(tmp_path / "adapter")
    assert str(weights) in str(err.value) and f"'{name}'" in str(err.value)
