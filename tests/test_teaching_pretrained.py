"""capsedu.teaching.pretrained: the shipped small CapsNet and its export."""
import pytest
import torch

from capsedu.checkpoint import CheckpointError
from capsedu.teaching.pretrained import PRETRAINED_PATH, export_pretrained, load_pretrained, pretrained_info


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
    out = export_pretrained(PRETRAINED_PATH, tmp_path / "copy.pt")
    a, b = load_pretrained(), load_pretrained(path=out)
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name


def test_missing_weights_say_how_to_recreate_them(tmp_path):
    with pytest.raises(CheckpointError, match="export-pretrained"):
        load_pretrained(path=tmp_path / "absent.pt")


def test_export_writes_a_record_with_the_measured_accuracy_of_the_float16_weights(tmp_path):
    import json

    out = export_pretrained(PRETRAINED_PATH, tmp_path / "copy.pt", command="capsedu train")
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["command"] == "capsedu train" and record["dtype"] == "float16"
    subset = record["test_accuracy_shipped"]["subset"]
    assert subset["examples"] == 1000 and 0.9 < subset["accuracy"] <= 1.0
    assert record["epochs"] == len(record["history"]) >= 1
