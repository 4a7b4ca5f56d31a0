"""``capsedu train --dataset cifar10|svhn|smallnorb`` and ``capsedu evaluate`` on their checkpoints, on tiny
files in each data set's real format; without the data, one line naming the files and exit status 2."""
from __future__ import annotations

import urllib.error

import pytest
import torch

from capsedu.cli import main
from capsedu.data.smallnorb import SMALLNORB_FILES
from dataset_files import write_cifar10, write_smallnorb, write_svhn
from run_fixtures import one_line_error

QUIET = ("--no-progress", "--batch-size", "8", "--epochs", "1")


@pytest.fixture
def offline(monkeypatch):
    """No download may reach the network (CI machines may be online)."""
    import torchvision.datasets.utils as tv_utils

    def refuse(*args, **kwargs):
        raise urllib.error.URLError("simulated: offline")

    monkeypatch.setattr(tv_utils, "download_url", refuse)


def test_smallnorb_trains_with_its_preset_and_evaluates_on_the_central_crop(tmp_path, capsys, offline):
    write_smallnorb(tmp_path / "data", n=8, seed=0)
    out = tmp_path / "run"
    assert main(["train", "--dataset", "smallnorb", "--data", str(tmp_path / "data"), "--output", str(out),
                 *QUIET]) == 0
    trained = capsys.readouterr().out.strip().splitlines()
    assert any("training on RandomCrop(size=32), testing on CenterCrop(size=32); capsnet 'smallnorb'" in line
               for line in trained)
    state = torch.load(out / "last.pt", weights_only=True)
    assert state["model_config"]["in_channels"] == 2 and state["model_config"]["image_size"] == 32
    assert state["train_config"]["augment"] == "auto" and state["train_config"]["preset"] == "auto"
    assert main(["evaluate", str(out / "last.pt"), "--data", str(tmp_path / "data"), "--device", "cpu"]) == 0
    evaluated = capsys.readouterr().out.strip().splitlines()
    assert "on 8 full smallnorb test examples" in evaluated[0]
    assert evaluated[-1] == trained[-1] and evaluated[-1].startswith("test accuracy: ")


def test_a_preset_and_augmentation_given_on_the_command_line_win(tmp_path, capsys, offline):
    write_svhn(tmp_path / "data", n=8, seed=0)
    out = tmp_path / "run"
    assert main(["train", "--dataset", "svhn", "--data", str(tmp_path / "data"), "--output", str(out), "--preset",
                 "small", "--augment", "crop", "--crop-size", "28", *QUIET]) == 0
    state = torch.load(out / "last.pt", weights_only=True)
    assert (state["model_config"]["conv_channels"], state["model_config"]["image_size"]) == (64, 28)
    assert main(["evaluate", str(out / "last.pt"), "--data", str(tmp_path / "data"), "--device", "cpu"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("test accuracy: ")


@pytest.mark.parametrize("dataset, names", [
    ("cifar10", ["data_batch_1", "cifar-10-batches-py", "simulated: offline"]),
    ("svhn", ["train_32x32.mat", "svhn", "simulated: offline"]),
    ("smallnorb", [SMALLNORB_FILES["train"][0], SMALLNORB_FILES["train"][1], "smallnorb"]),
])
def test_without_the_data_train_names_the_files_and_the_folder(tmp_path, capsys, offline, dataset, names):
    err = one_line_error(capsys, "train", "--dataset", dataset, "--data", str(tmp_path), "--output",
                         str(tmp_path / "run"), *QUIET)
    assert str(tmp_path) in err and all(name in err for name in names)


def test_evaluating_a_checkpoint_whose_data_is_gone_names_the_files(tmp_path, capsys, offline):
    write_cifar10(tmp_path / "data", per_batch=2, seed=0)
    out = tmp_path / "run"
    assert main(["train", "--dataset", "cifar10", "--preset", "small", "--data", str(tmp_path / "data"),
                 "--output", str(out), *QUIET]) == 0
    capsys.readouterr()
    err = one_line_error(capsys, "evaluate", str(out / "last.pt"), "--data", str(tmp_path / "elsewhere"))
    assert "test_batch" in err and str(tmp_path / "elsewhere" / "cifar-10-batches-py") in err


@pytest.mark.parametrize("argv, message", [
    (("--dataset", "svhn", "--subset"), "no subset is shipped for svhn"),
    (("--crop-size", "20"), "--crop-size applies to crop augmentation only"),
    (("--dataset", "svhn", "--augment", "crop", "--crop-size", "40"), "crop 40x40 is larger than the images (32x32)"),
])
def test_settings_that_cannot_work_give_one_line_errors(tmp_path, capsys, offline, argv, message):
    write_svhn(tmp_path / "data", n=4, seed=0)
    err = one_line_error(capsys, "train", "--data", str(tmp_path / "data"), "--output", str(tmp_path / "run"),
                         *QUIET, *argv)
    assert message in err


@pytest.mark.parametrize("dataset", ["cifar10", "smallnorb"])
def test_a_data_set_folder_with_zero_rows_is_an_error_not_a_run_with_loss_zero(tmp_path, capsys, offline, dataset):
    {"cifar10": lambda: write_cifar10(tmp_path / "data", per_batch=0, protocol=4),
     "smallnorb": lambda: write_smallnorb(tmp_path / "data", n=0)}[dataset]()
    err = one_line_error(capsys, "train", "--dataset", dataset, "--data", str(tmp_path / "data"), "--output",
                         str(tmp_path / "run"), *QUIET)
    assert f"the {dataset} train split in" in err and "holds no examples" in err
