"""Tests for capsedu.data: loading and fallback, corruption errors, augmentation, batching,
MultiMNIST, the affNIST-like set and the shipped subset.

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

from capsedu import data
from capsedu.data import (
    DATA_ENV, Batches, DataError, MNISTSplit, build_subset, draw_shifts, load_mnist, make_affine_test,
    make_multimnist, pad_to, random_affine, random_shift, resolve_root, shift_images, to_float,
)

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
        write_idx(root / "MNIST" / "raw" / img_name, sub.images.numpy())
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
def test_load_mnist_gives_uint8_images_and_int64_labels_0_to_9(split, n_full, n_subset):
    ds = load_mnist(split, download=False, verbose=False)
    assert ds.source in ("full", "subset")
    n = n_full if ds.source == "full" else n_subset
    assert ds.images.shape == (n, 28, 28) and ds.images.dtype == torch.uint8
    assert ds.labels.shape == (n,) and ds.labels.dtype == torch.int64
    assert len(ds) == n
    assert set(ds.labels.unique().tolist()) == set(range(10))
    assert int(ds.images.max()) == 255 and int(ds.images.min()) == 0


def test_load_mnist_rejects_unknown_split_by_name():
    with pytest.raises(ValueError, match="validation"):
        load_mnist("validation")


def test_load_mnist_reads_full_idx_files_as_source_full(full_root):
    ds = load_mnist("test", root=full_root, download=False, subset=False)
    assert ds.source == "full" and ds.images.dtype == torch.uint8 and ds.images.shape[1:] == (28, 28)


def test_subset_true_gives_the_class_balanced_shipped_subset(tmp_path):
    train = load_mnist("train", root=tmp_path, subset=True)
    test = load_mnist("test", root=tmp_path, subset=True)
    assert (train.source, len(train), test.source, len(test)) == ("subset", 5000, "subset", 1000)
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


def test_intact_split_still_loads_next_to_a_corrupt_one(full_root, tmp_path):
    copy_root(full_root, tmp_path, truncate="train-images-idx3-ubyte")
    assert load_mnist("test", root=tmp_path, download=False).source == "full"


def test_out_of_range_label_raises_data_error(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for split, (img_name, lab_name) in RAW_NAMES.items():
        write_idx(raw / img_name, np.zeros((4, 28, 28), np.uint8))
        write_idx(raw / lab_name, np.array([0, 1, 2, 11], np.uint8))
    with pytest.raises(DataError, match="labels span 0..11"):
        load_mnist("test", root=tmp_path, download=False)


def test_wrong_magic_number_raises_data_error(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    write_idx(raw / "t10k-images-idx3-ubyte", np.zeros((4, 28, 28), np.uint8))
    write_idx(raw / "t10k-labels-idx1-ubyte", np.zeros((4, 28, 28), np.uint8))  # images where labels belong
    with pytest.raises(DataError, match="not an MNIST label file"):
        load_mnist("test", root=tmp_path, download=False)


def test_missing_or_corrupt_subset_file_raises_data_error(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "SUBSET_PATH", tmp_path / "nope.npz")
    with pytest.raises(DataError, match="missing"):
        load_mnist("train", subset=True)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 this is not a zip archive")
    monkeypatch.setattr(data, "SUBSET_PATH", bad)
    with pytest.raises(DataError, match="corrupt") as info:
        load_mnist("train", root=tmp_path, download=False)
    assert str(bad) in str(info.value)


# ----------------------------------------------------------------------------- to_float / random_shift


def test_to_float_scales_uint8_to_unit_range_with_a_channel_axis(rng):
    x = torch.randint(0, 256, (2, 28, 28), dtype=torch.uint8, generator=rng)
    x[0, 0, 0], x[1, 0, 0] = 0, 255
    out = to_float(x)
    assert out.shape == (2, 1, 28, 28) and out.dtype == torch.float32
    assert torch.equal(to_float(x.unsqueeze(1)), out)
    assert out.min() == 0 and out.max() == 1 and torch.allclose(out * 255, x.unsqueeze(1).float())


def test_random_shift_with_zero_max_shift_is_identity(rng):
    x = torch.rand(4, 1, 28, 28, generator=rng)
    assert torch.equal(random_shift(x, max_shift=0, generator=rng), x)


def _reference_shift(img: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """Literal per-image shift: roll, then blank what wrapped around."""
    out = np.roll(img, (dy, dx), axis=(-2, -1))
    if dy > 0:
        out[..., :dy, :] = 0
    elif dy < 0:
        out[..., dy:, :] = 0
    if dx > 0:
        out[..., :, :dx] = 0
    elif dx < 0:
        out[..., :, dx:] = 0
    return out


def test_random_shift_matches_per_image_roll_with_zero_fill(rng):
    x = torch.rand(12, 2, 9, 11, generator=rng, dtype=torch.float64)  # non-square, two channels
    shifts = draw_shifts(12, 3, torch.Generator().manual_seed(7))
    out = random_shift(x, max_shift=3, generator=torch.Generator().manual_seed(7))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert shifts.abs().max() <= 3
    for b, (dx, dy) in enumerate(shifts.tolist()):
        np.testing.assert_array_equal(out[b].numpy(), _reference_shift(x[b].numpy(), dx, dy))


def test_shift_images_moves_content_right_and_down_for_positive_shifts():
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 2, 2] = 1.0
    out = shift_images(x, torch.tensor([[1, -2]]))  # dx=+1 (right), dy=-2 (up)
    assert out[0, 0, 0, 3] == 1.0 and out.sum() == 1.0


def test_random_shift_never_increases_mass(rng):
    x = torch.rand(64, 1, 28, 28, generator=rng)
    out = random_shift(x, max_shift=5, generator=rng)
    assert (out.sum(dim=(1, 2, 3)) <= x.sum(dim=(1, 2, 3)) + 1e-4).all()


def test_random_shift_covers_every_offset_in_range(rng):
    x = torch.zeros(2000, 1, 11, 11)
    x[:, :, 5, 5] = 1.0  # one bright pixel: where it lands is the shift
    out = random_shift(x, max_shift=2, generator=rng)
    flat = out.view(2000, -1).argmax(dim=1)
    dy, dx = flat // 11 - 5, flat % 11 - 5
    assert torch.equal(out.view(2000, -1).sum(1), torch.ones(2000))
    seen = set(zip(dx.tolist(), dy.tolist()))
    assert seen == {(a, b) for a in range(-2, 3) for b in range(-2, 3)}


# ----------------------------------------------------------------------------- Batches


@pytest.fixture
def toy(rng):
    images = torch.randint(0, 256, (50, 28, 28), dtype=torch.uint8, generator=rng)
    return images, torch.arange(50)  # labels name each example, so order is visible


def _collect(batches):
    return [(x.clone(), y.clone()) for x, y in batches]


def test_batches_counts_batches_with_and_without_drop_last(toy):
    assert len(Batches(toy, 16)) == 4 and len(list(Batches(toy, 16))) == 4
    assert len(Batches(toy, 16, drop_last=True)) == 3
    sizes = [len(y) for _, y in Batches(toy, 16, drop_last=True)]
    assert sizes == [16, 16, 16]
    assert [len(y) for _, y in Batches(toy, 16)] == [16, 16, 16, 2]
    assert len(Batches(toy, 10, drop_last=True)) == 5


def test_batches_yield_float_unit_range_images_matching_to_float(toy):
    images, labels = toy
    x, y = next(iter(Batches(toy, 8)))
    assert x.shape == (8, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert x.min() >= 0 and x.max() <= 1
    assert torch.equal(x, to_float(images[:8])) and torch.equal(y, labels[:8])


def test_batches_accept_an_mnist_split():
    split = MNISTSplit(torch.zeros(5, 28, 28, dtype=torch.uint8), torch.arange(5), "subset")
    assert [y.tolist() for _, y in Batches(split, 2)] == [[0, 1], [2, 3], [4]]


def test_shuffled_batches_visit_every_example_once_and_reshuffle_each_epoch(toy):
    b = Batches(toy, 16, shuffle=True, generator=torch.Generator().manual_seed(0))
    first = torch.cat([y for _, y in b])
    second = torch.cat([y for _, y in b])
    assert sorted(first.tolist()) == list(range(50)) and sorted(second.tolist()) == list(range(50))
    assert not torch.equal(first, second)


def test_batches_are_deterministic_given_a_seeded_generator(toy):
    def run(seed):
        g = torch.Generator().manual_seed(seed)
        return _collect(Batches(toy, 16, shuffle=True, augment_shift=2, generator=g))

    a, b, c = run(3), run(3), run(4)
    assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b))
    assert not all(torch.equal(ya, yc) for (_, ya), (_, yc) in zip(a, c))


@pytest.mark.parametrize("k", [0, 1, 3, 4, 9])
def test_iter_from_k_equals_iterating_and_skipping_k(toy, k):
    g_full, g_resume = torch.Generator().manual_seed(11), torch.Generator().manual_seed(11)
    full = _collect(Batches(toy, 16, shuffle=True, augment_shift=2, generator=g_full))
    resumed = _collect(Batches(toy, 16, shuffle=True, augment_shift=2, generator=g_resume).iter_from(k))
    assert len(resumed) == max(0, len(full) - k)
    for (xf, yf), (xr, yr) in zip(full[k:], resumed):
        assert torch.equal(xf, xr) and torch.equal(yf, yr)
    assert torch.equal(g_full.get_state(), g_resume.get_state())  # the next epoch lines up too


def test_augmented_batches_are_shifted_copies_of_the_originals(toy):
    images, _ = toy
    for x, y in Batches(toy, 16, augment_shift=2, generator=torch.Generator().manual_seed(0)):
        original = to_float(images[y])
        assert not torch.equal(x, original)
        assert (x.sum(dim=(1, 2, 3)) <= original.sum(dim=(1, 2, 3)) + 1e-4).all()


def test_limit_uses_only_the_first_examples(toy):
    assert torch.cat([y for _, y in Batches(toy, 8, limit=20)]).tolist() == list(range(20))
    shuffled = torch.cat([y for _, y in Batches(toy, 8, shuffle=True, limit=20,
                                                generator=torch.Generator().manual_seed(0))])
    assert sorted(shuffled.tolist()) == list(range(20))
    assert len(Batches(toy, 8, limit=20)) == 3


# ----------------------------------------------------------------------------- MultiMNIST


@pytest.fixture(scope="module")
def subset_test() -> MNISTSplit:
    return load_mnist("test", subset=True)


def test_multimnist_shapes_and_dtypes(subset_test):
    mm = make_multimnist(subset_test, 40, seed=1)
    assert len(mm) == 40
    for t in (mm.images, mm.first, mm.second):
        assert t.shape == (40, 1, 36, 36) and t.dtype == torch.float32
        assert t.min() >= 0 and t.max() <= 1
    assert mm.labels.shape == (40, 10) and mm.labels.dtype == torch.float32
    assert mm.first_label.dtype == torch.int64 and mm.second_label.shape == (40,)


def test_multimnist_pairs_two_digits_of_different_classes(subset_test):
    mm = make_multimnist(subset_test, 200, seed=2)
    assert (mm.first_label != mm.second_label).all()
    assert torch.equal(mm.labels.sum(1), torch.full((200,), 2.0))
    assert set(mm.labels.unique().tolist()) == {0.0, 1.0}
    rows = torch.arange(200)
    assert (mm.labels[rows, mm.first_label] == 1).all() and (mm.labels[rows, mm.second_label] == 1).all()


def test_multimnist_image_is_the_saturating_overlay_of_its_two_digits(subset_test):
    mm = make_multimnist(subset_test, 50, seed=3)
    assert torch.equal(mm.images, torch.clamp(mm.first + mm.second, max=1.0))
    assert (mm.first.sum(dim=(1, 2, 3)) > 0).all() and (mm.second.sum(dim=(1, 2, 3)) > 0).all()


def test_multimnist_keeps_whole_digits_inside_the_canvas(subset_test):
    mm = make_multimnist(subset_test, 300, max_shift=4, seed=4)
    masses = to_float(subset_test.images).sum(dim=(1, 2, 3))  # (N,)
    # shifts of up to 4 px inside a 4 px margin lose nothing: each digit's ink equals some source digit's
    for digit in (mm.first[:20], mm.second[:20]):
        got = digit.sum(dim=(1, 2, 3))
        assert ((got[:, None] - masses[None, :]).abs().min(dim=1).values < 1e-3).all()


def test_multimnist_is_deterministic_given_seed(subset_test):
    a, b, c = (make_multimnist(subset_test, 30, seed=s) for s in (5, 5, 6))
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, c.images)


# ----------------------------------------------------------------------------- affNIST-like set


def test_pad_to_centres_digits_on_a_zero_canvas(rng):
    x = torch.rand(3, 1, 28, 28, generator=rng) + 0.1
    out = pad_to(x, 40)
    assert out.shape == (3, 1, 40, 40)
    assert torch.equal(out[..., 6:34, 6:34], x)
    assert out.sum() == pytest.approx(x.sum().item(), rel=1e-6)


def test_identity_affine_reproduces_the_padded_input(subset_test, rng):
    x = pad_to(to_float(subset_test.images[:16]), 40)
    out = random_affine(x, max_rotation=0.0, max_shear=0.0, scale_range=(1.0, 1.0), max_translate=0, generator=rng)
    assert out.shape == x.shape
    assert (out - x).abs().max() < 1e-5


def test_translation_only_affine_is_an_integer_pixel_shift(subset_test, rng):
    x = pad_to(to_float(subset_test.images[:16]), 40)
    out = random_affine(x, max_rotation=0.0, max_shear=0.0, scale_range=(1.0, 1.0), max_translate=3, generator=rng)
    errors = torch.stack([
        (out - shift_images(x, torch.tensor([[dx, dy]]).expand(16, 2))).abs().amax(dim=(1, 2, 3))
        for dx in range(-3, 4) for dy in range(-3, 4)
    ])  # (49, 16)
    assert (errors.min(dim=0).values < 1e-5).all()


def test_affine_shear_is_measured_in_pixels_on_non_square_images(rng):
    x = torch.zeros(64, 1, 21, 41)
    x[:, :, 2:19, 20] = 1.0  # a vertical bar; shear x' = x + s * y tilts it to slope s
    out = random_affine(x, max_rotation=0.0, max_shear=0.5, scale_range=(1.0, 1.0), max_translate=0, generator=rng)
    ys, xs = torch.arange(21.0), torch.arange(41.0)
    mass = out[:, 0].sum(dim=2)  # (64, 21) ink per row
    rows = mass > 0.5
    centre = (out[:, 0] * xs).sum(dim=2) / mass.clamp_min(1e-6)  # (64, 21) ink centroid per row
    slopes = []
    for b in range(64):
        y, c = ys[rows[b]], centre[b][rows[b]]
        slopes.append(((y - y.mean()) * (c - c.mean())).sum() / ((y - y.mean()) ** 2).sum())
    slopes = torch.stack(slopes)
    assert slopes.abs().max() <= 0.5 + 1e-3 and slopes.abs().max() > 0.3


def test_affine_downscaling_shrinks_the_ink(subset_test, rng):
    x = pad_to(to_float(subset_test.images[:16]), 40)
    out = random_affine(x, max_rotation=0.0, max_shear=0.0, scale_range=(0.5, 0.5), max_translate=0, generator=rng)
    ratio = out.sum(dim=(1, 2, 3)) / x.sum(dim=(1, 2, 3))
    assert ((ratio > 0.15) & (ratio < 0.35)).all()  # area scales by 0.5 * 0.5


def test_make_affine_test_shapes_labels_and_determinism(subset_test):
    images, labels = make_affine_test(subset_test, n=32, seed=0)
    assert images.shape == (32, 1, 40, 40) and images.dtype == torch.float32
    assert torch.equal(labels, subset_test.labels[:32])
    assert images.min() >= 0 and images.max() <= 1 + 1e-6
    again, _ = make_affine_test(subset_test, n=32, seed=0)
    other, _ = make_affine_test(subset_test, n=32, seed=1)
    assert torch.equal(images, again) and not torch.equal(images, other)
    assert not torch.allclose(images, pad_to(to_float(subset_test.images[:32]), 40))


# ----------------------------------------------------------------------------- build_subset


def test_build_subset_is_class_balanced_auditable_and_deterministic(small_root, tmp_path):
    # the sampling logic does not care how big "full" is, so the cheap stand-in root is used
    a = build_subset(tmp_path / "a.npz", root=small_root, n_train=23, n_test=10, seed=3)
    assert data.main(["--data", str(small_root), "--n-train", "23", "--n-test", "10", "--seed", "3",
                      "--out", str(tmp_path / "b.npz")]) == 0
    c = build_subset(tmp_path / "c.npz", root=small_root, n_train=23, n_test=10, seed=4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz", "b.npz", "c.npz"]  # no temp files left
    with np.load(a) as za, np.load(tmp_path / "b.npz") as zb, np.load(c) as zc:
        for key in ("train_images", "train_labels", "train_indices", "test_images", "test_labels", "test_indices"):
            np.testing.assert_array_equal(za[key], zb[key])
        assert not np.array_equal(za["train_indices"], zc["train_indices"])
        assert za["train_images"].dtype == np.uint8 and za["train_labels"].dtype == np.uint8
        assert np.bincount(za["train_labels"], minlength=10).tolist() == [3, 3, 3] + [2] * 7
        assert np.bincount(za["test_labels"], minlength=10).tolist() == [1] * 10
        meta = json.loads(str(za["meta"]))
        assert meta["seed"] == 3 and meta["n_train"] == 23
        full_test = load_mnist("test", root=small_root, download=False, subset=False)
        idx = torch.from_numpy(za["test_indices"].astype(np.int64))
        assert len(set(idx.tolist())) == 10
        np.testing.assert_array_equal(za["test_images"], full_test.images[idx].numpy())
        np.testing.assert_array_equal(za["test_labels"], full_test.labels[idx].numpy())


def test_build_subset_requires_full_data(tmp_path, monkeypatch):
    import torchvision

    def offline(self):
        raise RuntimeError("simulated: no network")

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", offline)  # never fetch from a test
    with pytest.raises(DataError):
        build_subset(tmp_path / "s.npz", root=tmp_path / "empty", n_train=10, n_test=10)
    assert not (tmp_path / "s.npz").exists()
