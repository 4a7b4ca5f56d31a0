"""Checkpoint integrity: the SHA-256 of a checkpoint's tensors is written with it and checked on every load."""
from __future__ import annotations

import struct

import pytest
import torch

from capsedu.training.checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint, state_checksum
from capsedu.models import CapsNet

MARKER = 1.2345678


def tiny_state():
    return {"model_class": "capsnet", "model_config": {}, "model_state": {"w": torch.full((64,), MARKER)},
            "history": [{"epoch": 1}], "generator_state": torch.arange(4, dtype=torch.uint8)}


def test_a_checkpoint_records_the_sha256_of_its_tensors_and_loads_back_unchanged(tmp_path):
    state = tiny_state()
    path = save_checkpoint(state, tmp_path / "c.pt")
    loaded = load_checkpoint(path)
    assert loaded["sha256"] == state_checksum(state) == state_checksum(loaded)
    assert torch.equal(loaded["model_state"]["w"], state["model_state"]["w"])


def test_a_flipped_byte_inside_a_tensor_is_refused_in_one_line(tmp_path):
    path = save_checkpoint(tiny_state(), tmp_path / "c.pt")
    data = bytearray(path.read_bytes())
    at = data.find(struct.pack("<f", MARKER))
    assert at > 0
    data[at] ^= 0x01  # the zip's own CRC is not checked by torch.load: only the checksum notices
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="tensors do not match the SHA-256 recorded when it was written"):
        load_checkpoint(path)


def test_a_checkpoint_whose_tensors_were_replaced_is_refused(tmp_path):
    net = CapsNet("small", reconstruction=False)
    path = save_checkpoint({"model_class": "capsnet", "model_config": net.config.to_dict(),
                            "model_state": net.state_dict()}, tmp_path / "c.pt")
    state = torch.load(path, weights_only=True)
    state["model_state"]["conv1.bias"] = state["model_state"]["conv1.bias"] + 1.0  # e.g. edited in a notebook
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="do not match the SHA-256"):
        load_model(path)


def test_the_checksum_does_not_depend_on_device_layout_or_dtype_views():
    x = torch.randn(2, 3, 4, 5)
    assert state_checksum({"x": x}) == state_checksum({"x": x.to(memory_format=torch.channels_last)})
    assert state_checksum({"x": x}) != state_checksum({"x": x.double()})
    assert state_checksum({"x": x}) != state_checksum({"y": x})


def test_a_checkpoint_written_before_checksums_still_loads(tmp_path):
    state = {"format": "capsedu-checkpoint-v1", **tiny_state()}
    torch.save(state, tmp_path / "old.pt")
    assert "sha256" not in load_checkpoint(tmp_path / "old.pt")


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"),
                                   RuntimeError("[enforce fail at inline_container.cc:595] . unexpected pos 64")])
def test_a_full_disk_is_a_one_line_checkpoint_error_and_the_old_file_survives(tmp_path, monkeypatch, error):
    path = save_checkpoint(tiny_state(), tmp_path / "c.pt")

    def full(obj, f):
        f.write(b"partial")
        raise error

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(CheckpointError, match=r"could not write checkpoint .*c\.pt: "):
        save_checkpoint({**tiny_state(), "history": []}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["history"] == [{"epoch": 1}]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]
