"""The affNIST-like generator's calibrated translation (capsedu.data.affine) and the real affNIST reader
(capsedu.data.affnist), on tiny hand-made data."""
import numpy as np
import pytest
import scipy.io
import torch

from capsedu.data import DataError, ImageSplit
from capsedu.data import affine as affine_module
from capsedu.data.affine import AFFNIST_LIKE, ink_box, make_affine_test
from capsedu.data.affnist import has_affnist, load_affnist_test


@pytest.fixture(scope="module")
def bars():
    """64 seeded 28x28 "digits": a 12x4 bar at a random place near the centre, labels 0..9."""
    g = torch.Generator().manual_seed(0)
    images = torch.zeros(64, 1, 28, 28, dtype=torch.uint8)
    for i, (y, x) in enumerate(torch.randint(6, 12, (64, 2), generator=g).tolist()):
        images[i, 0, y:y + 12, x:x + 4] = 255
    return ImageSplit(images, torch.arange(64) % 10, 10, "bars", "generated", "test")


def test_ink_box_finds_the_inked_rows_and_columns_and_the_whole_image_when_blank():
    images = torch.zeros(2, 1, 5, 6)
    images[0, 0, 1:3, 2:5] = 0.5
    assert ink_box(images).tolist() == [[2, 1, 4, 2], [0, 0, 5, 4]]


def test_anywhere_moves_digits_beyond_the_training_placement_and_keeps_all_their_ink(bars):
    moved = make_affine_test(bars, seed=0, **AFFNIST_LIKE).images
    still = make_affine_test(bars, seed=0, size=40, max_translate=0).images
    assert torch.allclose(moved.sum(dim=(1, 2, 3)), still.sum(dim=(1, 2, 3)), atol=1e-3)  # whole-pixel moves
    box = ink_box(moved).double()
    centre_offset = ((box[:, 0] + box[:, 2]) / 2 - 19.5).abs().max(), ((box[:, 1] + box[:, 3]) / 2 - 19.5).abs().max()
    assert min(centre_offset) > 6          # training placement moves a digit's centre by at most 6 px
    assert (box[:, 0] == 0).any() and (box[:, 2] == 39).any()   # some digits touch the left, some the right edge


def test_anywhere_sets_are_deterministic_and_independent_of_chunking(bars, monkeypatch):
    first = make_affine_test(bars, seed=3, **AFFNIST_LIKE)
    monkeypatch.setattr(affine_module, "_CHUNK", 7)
    assert torch.equal(first.images, make_affine_test(bars, seed=3, **AFFNIST_LIKE).images)
    assert not torch.equal(first.images, make_affine_test(bars, seed=4, **AFFNIST_LIKE).images)
    assert "moved anywhere on the canvas" in first.origin


def _write_batch(path, images, labels, **overrides):
    data = {"image": images.reshape(len(images), 1600).T.copy(), "label_int": labels}
    data.update(overrides)
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, {"affNISTdata": data})


def test_the_affnist_reader_reads_numbered_batches_in_order_each_column_row_by_row(tmp_path):
    rng = np.random.default_rng(0)
    a, b = (rng.integers(0, 256, (n, 40, 40), dtype=np.uint8) for n in (3, 2))
    folder = tmp_path / "affnist" / "test_batches"
    _write_batch(folder / "10.mat", b, np.array([7, 8], dtype=np.uint8))
    _write_batch(folder / "2.mat", a, np.array([0, 1, 9], dtype=np.uint8))
    assert has_affnist(tmp_path) and not has_affnist(tmp_path / "elsewhere")
    split = load_affnist_test(tmp_path)
    assert split.images.shape == (5, 1, 40, 40) and split.labels.tolist() == [0, 1, 9, 7, 8]
    assert np.array_equal(split.images[:, 0].numpy(), np.concatenate([a, b]))
    assert load_affnist_test(tmp_path, n=4).labels.tolist() == [0, 1, 9, 7]


def test_missing_affnist_is_one_error_naming_the_folder_and_where_to_get_it(tmp_path):
    with pytest.raises(DataError, match=r"no test batches in .*affnist/test_batches.*tijmen/affNIST"):
        load_affnist_test(tmp_path)


@pytest.mark.parametrize("write, problem", [
    (lambda p: _write_batch(p, np.zeros((2, 40, 40), np.uint8), np.array([1, 2, 3])), "2 images but label_int"),
    (lambda p: _write_batch(p, np.zeros((2, 40, 40), np.uint8), np.array([1, 12])), "labels span 1..12"),
    (lambda p: _write_batch(p, np.zeros((2, 40, 40), np.uint8), np.array([1, 2]),
                            image=np.zeros((784, 2), np.uint8)), r"image is uint8 \(784, 2\)"),
    (lambda p: scipy.io.savemat(p, {"X": np.zeros(3)}), "lacks the struct affNISTdata"),
    (lambda p: p.write_bytes(b"MATLAB 5.0 MAT-file" + b"\0" * 20), "truncated or corrupt"),
])
def test_a_malformed_affnist_file_is_one_error_naming_it(tmp_path, write, problem):
    path = tmp_path / "affnist" / "test_batches" / "1.mat"
    path.parent.mkdir(parents=True)
    write(path)
    with pytest.raises(DataError, match=problem) as exc:
        load_affnist_test(tmp_path)
    assert str(path) in str(exc.value) and "\n" not in str(exc.value)


def test_a_foreign_file_among_the_batches_is_named(tmp_path):
    _write_batch(tmp_path / "affnist" / "test_batches" / "1.mat", np.zeros((1, 40, 40), np.uint8), np.array([3]))
    (tmp_path / "affnist" / "test_batches" / "notes.mat").write_bytes(b"")
    with pytest.raises(DataError, match="holds notes.mat"):
        has_affnist(tmp_path)
