"""Tests for capsedu.data.mnist: root resolution, loading and the subset fallback, corrupt-file
errors and the shipped subset.

Full MNIST is found through $CAPSEDU_DATA (CI points it at the shared copy). Without it, the
tests that need "full" raw files build a small stand-in root from the shipped subset, written
in the same IDX format, so every test runs (and can fail) either way.
"""
from __future__ import annotations

import json
import os
import pathlib
import struct

import numpy as np
import pytest
import torch

from capsedu.data import DATA_ENV, DataError, ImageSplit, build_subset, load_mnist, mnist, resolve_root

RAW_NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
ALL_RAW = [name for pair in RAW_NAMES.values() for name in pair]


def write_idx(path: pathlib.Path, array: np.ndarray) -> None:
    """Write a uint8 array in MNIST's IDX format (magic 0x0803 for images, 0x0801 for labels)."""
    magic = 0x0800 + array.ndim
    with open(path, "wb") as f:
        f.write(struct.pack(">" + "I" * (1 + array.ndim), magic, *array.shape))
        f.write(np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def _env_raw_dir() -> pathlib.Path | None:
    if not os.environ.get(DATA_ENV):
        return None
    raw = resolve_root() / "MNIST" / "raw"
    return raw if all((raw / name).is_file() for name in ALL_RAW) else None


@pytest.fixture(scope="session")
def small_root(tmp_path_factory) -> pathlib.Path:
    """A root whose four raw IDX files hold the shipped subset (6,000 digits): cheap "full" data."""
    root = tmp_path_factory.mktemp("idx_from_subset")
    (root / "MNIST" / "raw").mkdir(parents=True)
    for split, (img_name, lab_name) in RAW_NAMES.items():
        sub = load_mnist(split, subset=True)
        write_idx(root / "MNIST" / "raw" / img_name, sub.images[:, 0].numpy())  # IDX holds (N, 28, 28)
        write_idx(root / "MNIST" / "raw" / lab_name, sub.labels.numpy().astype(np.uint8))
    return root


@pytest.fixture(scope="session")
def full_root(small_root) -> pathlib.Path:
    """A root with all four raw IDX files: the real data if $CAPSEDU_DATA has it, else ``small_root``."""
    raw = _env_raw_dir()
    return raw.parent.parent if raw is not None else small_root


def copy_root(src_root: pathlib.Path, dst_root: pathlib.Path, truncate: str | None = None) -> pathlib.Path:
    """Mirror a raw folder: links for intact files, a cut-short real copy for ``truncate``."""
    raw = dst_root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ALL_RAW:
        src = src_root / "MNIST" / "raw" / name
        if name == truncate:
            with open(src, "rb") as f:
                (raw / name).write_bytes(f.read(src.stat().st_size // 2))
        else:
            (raw / name).symlink_to(src)
    return raw


# ----------------------------------------------------------------------------- resolve_root


def test_resolve_root_prefers_explicit_then_env_then_home_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "env"))
    assert resolve_root(tmp_path / "explicit") == tmp_path / "explicit"
    assert resolve_root() == tmp_path / "env"
    monkeypatch.setenv(DATA_ENV, "")  # empty counts as unset
    assert resolve_root() == tmp_path / "home" / ".cache" / "capsedu"
    monkeypatch.delenv(DATA_ENV)
    assert resolve_root() == tmp_path / "home" / ".cache" / "capsedu"
    assert resolve_root("~/x") == tmp_path / "home" / "x"


def test_resolve_root_makes_relative_paths_absolute(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert resolve_root("a/../b") == tmp_path / "b"


# ----------------------------------------------------------------------------- load_mnist


@pytest.mark.parametrize("split, n_full, n_subset", [("train", 60000, 5000), ("test", 10000, 1000)])
def test_load_mnist_gives_uint8_single_channel_images_and_int64_labels_0_to_9(split, n_full, n_subset):
    ds = load_mnist(split, download=False, verbose=False)
    assert isinstance(ds, ImageSplit) and ds.name == "mnist" and ds.n_classes == 10
    assert ds.source in ("full", "subset")
    n = n_full if ds.source == "full" else n_subset
    assert ds.images.shape == (n, 1, 28, 28) and ds.images.dtype == torch.uint8 and ds.image_shape == (1, 28, 28)
    assert ds.labels.shape == (n,) and ds.labels.dtype == torch.int64
    assert len(ds) == n
    assert set(ds.labels.unique().tolist()) == set(range(10))
    assert int(ds.images.max()) == 255 and int(ds.images.min()) == 0


def test_load_mnist_rejects_unknown_split_by_name():
    with pytest.raises(ValueError, match="validation"):
        load_mnist("validation")


def test_load_mnist_reads_full_idx_files_as_source_full_with_the_raw_folder_as_origin(full_root):
    ds = load_mnist("test", root=full_root, download=False, subset=False)
    assert ds.source == "full" and ds.images.dtype == torch.uint8 and ds.image_shape == (1, 28, 28)
    assert ds.origin == str(full_root / "MNIST" / "raw")


def test_subset_true_gives_the_class_balanced_shipped_subset(tmp_path):
    train = load_mnist("train", root=tmp_path, subset=True)
    test = load_mnist("test", root=tmp_path, subset=True)
    assert (train.source, len(train), test.source, len(test)) == ("subset", 5000, "subset", 1000)
    assert train.origin == str(mnist.SUBSET_PATH) and train.image_shape == (1, 28, 28)
    assert torch.bincount(train.labels).tolist() == [500] * 10
    assert torch.bincount(test.labels).tolist() == [100] * 10
    assert not (tmp_path / "MNIST").exists()  # the root is not even looked at


def test_missing_data_without_download_falls_back_to_subset_with_one_stderr_line(tmp_path, capsys):
    ds = load_mnist("train", root=tmp_path, download=False)
    assert ds.source == "subset" and len(ds) == 5000
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and captured.out == ""
    assert str(tmp_path) in lines[0] and "subset" in lines[0] and "5000 train / 1000 test" in lines[0]


def test_failed_download_falls_back_to_subset_and_reports_why(tmp_path, capsys, monkeypatch):
    import torchvision

    def offline(self):
        raise RuntimeError("Error downloading:\nsimulated: no network")

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", offline)
    ds = load_mnist("test", root=tmp_path, download=True)
    assert ds.source == "subset" and len(ds) == 1000
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "simulated: no network" in err[0]


def test_fallback_is_silent_when_not_verbose(tmp_path, capsys):
    assert load_mnist("test", root=tmp_path, download=False, verbose=False).source == "subset"
    assert capsys.readouterr().err == ""


def test_subset_false_with_missing_data_raises_data_error_naming_root(tmp_path):
    with pytest.raises(DataError, match="not available") as info:
        load_mnist("train", root=tmp_path, download=False, subset=False)
    assert str(tmp_path) in str(info.value)


@pytest.mark.parametrize("bad", ["train-images-idx3-ubyte", "train-labels-idx1-ubyte"])
@pytest.mark.parametrize("subset", [None, False])
def test_truncated_file_raises_data_error_naming_it_instead_of_falling_back(full_root, tmp_path, bad, subset):
    raw = copy_root(full_root, tmp_path, truncate=bad)
    with pytest.raises(DataError, match="truncated") as info:
        load_mnist("train", root=tmp_path, download=False, subset=subset)
    assert str(raw / bad) in str(info.value) and "re-download" in str(info.value)
    assert "\n" not in str(info.value)


def test_intact_split_still_loads_next_to_a_corrupt_one(full_root, tmp_path):
    copy_root(full_root, tmp_path, truncate="train-images-idx3-ubyte")
    assert load_mnist("test", root=tmp_path, download=False).source == "full"


def test_out_of_range_label_raises_data_error_naming_the_files(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for split, (img_name, lab_name) in RAW_NAMES.items():
        write_idx(raw / img_name, np.zeros((4, 28, 28), np.uint8))
        write_idx(raw / lab_name, np.array([0, 1, 2, 11], np.uint8))
    with pytest.raises(DataError, match="labels span 0..11, expected 0..9") as info:
        load_mnist("test", root=tmp_path, download=False)
    assert str(raw / "t10k-labels-idx1-ubyte") in str(info.value) and "\n" not in str(info.value)


def test_wrong_magic_number_raises_data_error(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    write_idx(raw / "t10k-images-idx3-ubyte", np.zeros((4, 28, 28), np.uint8))
    write_idx(raw / "t10k-labels-idx1-ubyte", np.zeros((4, 28, 28), np.uint8))  # images where labels belong
    with pytest.raises(DataError, match="not an MNIST label file") as info:
        load_mnist("test", root=tmp_path, download=False)
    assert str(raw / "t10k-labels-idx1-ubyte") in str(info.value)


def test_wrong_image_size_raises_data_error_naming_the_file(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    write_idx(raw / "t10k-images-idx3-ubyte", np.zeros((4, 32, 32), np.uint8))
    write_idx(raw / "t10k-labels-idx1-ubyte", np.zeros(4, np.uint8))
    with pytest.raises(DataError, match="holds 32x32 images, expected 28x28") as info:
        load_mnist("test", root=tmp_path, download=False)
    assert str(raw / "t10k-images-idx3-ubyte") in str(info.value)


def test_missing_or_corrupt_subset_file_raises_data_error(tmp_path, monkeypatch):
    monkeypatch.setattr(mnist, "SUBSET_PATH", tmp_path / "nope.npz")
    with pytest.raises(DataError, match="missing"):
        load_mnist("train", subset=True)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 this is not a zip archive")
    monkeypatch.setattr(mnist, "SUBSET_PATH", bad)
    with pytest.raises(DataError, match="corrupt") as info:
        load_mnist("train", root=tmp_path, download=False)
    assert str(bad) in str(info.value)


def test_subset_file_with_bad_labels_raises_data_error_naming_it(tmp_path, monkeypatch):
    bad = tmp_path / "labels.npz"
    np.savez(bad, **{f"{s}_images": np.zeros((3, 28, 28), np.uint8) for s in ("train", "test")},
             **{f"{s}_labels": np.array([0, 10, 1], np.uint8) for s in ("train", "test")})
    monkeypatch.setattr(mnist, "SUBSET_PATH", bad)
    with pytest.raises(DataError, match=r"labels span 0..10, expected 0..9") as info:
        load_mnist("test", subset=True)
    assert str(bad) in str(info.value) and "make-subset" in str(info.value)


# ----------------------------------------------------------------------------- build_subset


def test_build_subset_is_class_balanced_auditable_and_deterministic(small_root, tmp_path):
    # the sampling logic does not care how big "full" is, so the cheap stand-in root is used
    a = build_subset(tmp_path / "a.npz", root=small_root, n_train=23, n_test=10, seed=3)
    b = build_subset(tmp_path / "b.npz", root=small_root, n_train=23, n_test=10, seed=3)
    c = build_subset(tmp_path / "c.npz", root=small_root, n_train=23, n_test=10, seed=4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz", "b.npz", "c.npz"]  # no temp files left
    with np.load(a) as za, np.load(b) as zb, np.load(c) as zc:
        for key in ("train_images", "train_labels", "train_indices", "test_images", "test_labels", "test_indices"):
            np.testing.assert_array_equal(za[key], zb[key])
        assert not np.array_equal(za["train_indices"], zc["train_indices"])
        assert za["train_images"].dtype == np.uint8 and za["train_labels"].dtype == np.uint8
        assert za["train_images"].shape == (23, 28, 28)  # the file keeps MNIST's channel-less layout
        assert np.bincount(za["train_labels"], minlength=10).tolist() == [3, 3, 3] + [2] * 7
        assert np.bincount(za["test_labels"], minlength=10).tolist() == [1] * 10
        meta = json.loads(str(za["meta"]))
        assert meta["seed"] == 3 and meta["n_train"] == 23
        full_test = load_mnist("test", root=small_root, download=False, subset=False)
        idx = torch.from_numpy(za["test_indices"].astype(np.int64))
        assert len(set(idx.tolist())) == 10
        np.testing.assert_array_equal(za["test_images"], full_test.images[idx, 0].numpy())
        np.testing.assert_array_equal(za["test_labels"], full_test.labels[idx].numpy())


def test_a_built_subset_loads_back_as_the_sampled_digits(small_root, tmp_path, monkeypatch):
    path = build_subset(tmp_path / "s.npz", root=small_root, n_train=20, n_test=10, seed=0)
    monkeypatch.setattr(mnist, "SUBSET_PATH", path)
    test = load_mnist("test", subset=True)
    full_test = load_mnist("test", root=small_root, download=False, subset=False)
    with np.load(path) as z:
        idx = torch.from_numpy(z["test_indices"].astype(np.int64))
    assert test.origin == str(path) and test.image_shape == (1, 28, 28)
    assert torch.equal(test.images, full_test.images[idx]) and torch.equal(test.labels, full_test.labels[idx])


def test_build_subset_requires_full_data(tmp_path, monkeypatch):
    import torchvision

    def offline(self):
        raise RuntimeError("simulated: no network")

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", offline)  # never fetch from a test
    with pytest.raises(DataError):
        build_subset(tmp_path / "s.npz", root=tmp_path / "empty", n_train=10, n_test=10)
    assert not (tmp_path / "s.npz").exists()


@pytest.mark.parametrize("subset", [None, False])
def test_three_of_the_four_raw_files_is_an_error_naming_the_missing_one_not_a_fallback(full_root, tmp_path, subset,
                                                                                         capsys):
    raw = copy_root(full_root, tmp_path)
    (raw / "t10k-labels-idx1-ubyte").unlink()
    for split in ("train", "test"):
        with pytest.raises(DataError, match=r"incomplete: missing t10k-labels-idx1-ubyte \(present: train-images"):
            load_mnist(split, root=tmp_path, download=False, subset=subset)
    assert "shipped subset (" not in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["directory", "broken link"])
def test_a_directory_or_a_broken_link_in_a_raw_files_place_is_named(full_root, tmp_path, kind):
    raw = copy_root(full_root, tmp_path)
    target = raw / "train-labels-idx1-ubyte"
    target.unlink()
    if kind == "directory":
        target.mkdir()
    else:
        target.symlink_to(tmp_path / "nowhere")
    with pytest.raises(DataError, match=f"MNIST file {target} is a {kind}"):
        load_mnist("test", root=tmp_path, download=False)
