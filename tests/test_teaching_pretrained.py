"""capsedu.teaching.pretrained (the shipped small CapsNet) and capsedu.training.export (how it was made)."""
import json

import pytest
import torch

from capsedu.teaching.pretrained import PRETRAINED_PATH, load_pretrained, pretrained_info
from capsedu.training.checkpoint import CheckpointError, load_checkpoint
from capsedu.training.export import export_model, export_record


def test_shipped_weights_live_in_the_package_assets():
    assert PRETRAINED_PATH.is_file()
    assert PRETRAINED_PATH.parent.name == "assets" and PRETRAINED_PATH.parent.parent.name == "capsedu"


def test_load_pretrained_gives_a_float32_model_in_eval_mode_with_its_history():
    model = load_pretrained()
    assert not model.training
    assert all(p.dtype == torch.float32 for p in model.parameters())
    info = pretrained_info()
    assert info["history"] and info["model_config"] == model.config.to_dict()


def test_export_of_the_shipped_file_round_trips_its_weights(tmp_path):
    out = export_model(PRETRAINED_PATH, tmp_path / "copy.pt")
    a, b = load_pretrained(), load_pretrained(path=out)
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name


def test_missing_weights_say_how_to_recreate_them(tmp_path):
    with pytest.raises(CheckpointError, match="export-pretrained .* --out"):
        load_pretrained(path=tmp_path / "absent.pt")


def test_export_writes_a_record_with_the_measured_accuracy_and_the_identity_of_the_data(tmp_path):
    out = export_model(PRETRAINED_PATH, tmp_path / "copy.pt", command="capsedu train")
    record = export_record(out)
    assert record["command"] == "capsedu train" and record["dtype"] == "float16"
    subset = record["test_accuracy_shipped"]["subset"]
    assert subset["examples"] == 1000 and 0.9 < subset["accuracy"] <= 1.0
    assert subset["data"]["split"] == "test" and subset["data"]["source"] == "subset"
    assert len(subset["data"]["sha256"]) == 16 and "origin" not in json.dumps(record)
    assert str(tmp_path) not in json.dumps(record["test_accuracy_shipped"])  # no path of this machine
    assert record["epochs"] == len(record["history"]) >= 1
    assert record["weights_sha256"] == load_checkpoint(out)["sha256"]


def test_other_weights_under_a_records_name_are_refused(tmp_path):
    out = export_model(PRETRAINED_PATH, tmp_path / "copy.pt")
    record = export_record(out)
    state = torch.load(out, weights_only=True)
    state["model_state"]["conv1.bias"] = state["model_state"]["conv1.bias"] * 0
    from capsedu.training.checkpoint import save_checkpoint  # a consistent file: its own checksum is right

    save_checkpoint({k: v for k, v in state.items() if k not in ("format", "sha256")}, out)
    assert export_record(out) == record
    with pytest.raises(CheckpointError, match="is not the model its record copy.json describes"):
        load_pretrained(path=out)


@pytest.mark.parametrize("out", ["dir", "weights.bin"])
def test_an_export_target_that_is_a_directory_or_not_a_pt_file_is_named(tmp_path, out):
    target = tmp_path / out
    if out == "dir":
        target.mkdir()
    with pytest.raises(ValueError, match=f"the export must be a .pt file .*, got {target}"):
        export_model(PRETRAINED_PATH, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == (["dir"] if out == "dir" else [])
