"""Tests for capsedu.data's split type and data set registry: ImageSplit validation, load_split."""
from __future__ import annotations

import pytest
import torch

from capsedu import data
from capsedu.data import DATASETS, ImageSplit, load_split


def make_split(images=None, labels=None, n_classes=3, **kw) -> ImageSplit:
    images = torch.zeros(4, 1, 5, 6, dtype=torch.uint8) if images is None else images
    labels = torch.tensor([0, 1, 2, 1]) if labels is None else labels
    meta = dict(name="toy", source="generated", origin="test")
    meta.update(kw)
    return ImageSplit(images, labels, n_classes, **meta)


def test_image_split_reports_length_shape_and_provenance():
    split = make_split(torch.zeros(4, 3, 5, 6, dtype=torch.uint8))
    assert len(split) == 4 and split.image_shape == (3, 5, 6) and not split.multi_hot
    assert (split.name, split.source, split.origin) == ("toy", "generated", "test")
    assert repr(split) == "ImageSplit(toy generated, n=4, 3x5x6 uint8, 3 classes, origin='test')"


def test_image_split_accepts_float_images_and_multi_hot_labels():
    labels = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.5, 0.0]])
    split = make_split(torch.rand(2, 2, 3, 3, generator=torch.Generator().manual_seed(0)), labels)
    assert split.multi_hot and "multi-hot" in repr(split)


def test_image_split_take_keeps_the_first_examples_and_the_provenance():
    split = make_split()
    first = split.take(2)
    assert len(first) == 2 and torch.equal(first.labels, split.labels[:2])
    assert (first.name, first.source, first.origin, first.n_classes) == ("toy", "generated", "test", 3)
    assert len(split.take(100)) == 4
    with pytest.raises(ValueError, match="n must be an integer >= 0"):
        split.take(-1)


@pytest.mark.parametrize("images, labels, n_classes, message", [
    (torch.zeros(4, 5, 6, dtype=torch.uint8), None, 3, r"images must be \(N, C, H, W\), got shape \(4, 5, 6\)"),
    (torch.zeros(4, 1, 5, 6, dtype=torch.int32), None, 3, "images must be uint8 .* got torch.int32"),
    (torch.full((4, 1, 5, 6), 255.0), None, 3, "floating images span 255..255, expected 0..1"),
    (torch.full((4, 1, 5, 6), float("nan")), None, 3, "floating images span nan..nan"),
    (None, torch.tensor([0, 1, 2]), 3, r"labels have shape \(3,\) for 4 images"),
    (None, torch.tensor([0, 1, 3, 1]), 3, r"labels span 0..3, expected 0..2"),
    (None, torch.tensor([0, -1, 2, 1]), 3, r"labels span -1..2, expected 0..2"),
    (None, torch.tensor([0, 1, 2, 1], dtype=torch.int32), 3, "labels must be int64 class indices"),
    (None, torch.zeros(4, 2), 3, r"multi-hot labels have shape \(4, 2\), expected \(4, 3\)"),
    (None, torch.full((4, 3), 2.0), 3, r"labels span 2..2, expected 0..1"),
    (None, None, 0, "n_classes must be an integer >= 1, got 0"),
    (None, None, True, "n_classes must be an integer >= 1, got True"),
])
def test_image_split_rejects_bad_tensors_with_one_line_messages(images, labels, n_classes, message):
    with pytest.raises(ValueError, match=message) as info:
        make_split(images, labels, n_classes)
    assert "\n" not in str(info.value)


def test_load_split_dispatches_to_the_registered_loader():
    split = load_split("mnist", "test", subset=True)
    assert (split.name, split.source, len(split), split.n_classes) == ("mnist", "subset", 1000, 10)
    assert DATASETS["mnist"] is data.load_mnist


def test_load_split_passes_every_option_to_a_newly_registered_data_set(monkeypatch):
    calls = []

    def load_toy(split, *, root, download, subset, verbose):
        calls.append((split, root, download, subset, verbose))
        return make_split(origin=f"toy {split}")

    monkeypatch.setitem(DATASETS, "toy", load_toy)
    split = load_split("toy", "train", root="/r", subset=False, download=False, verbose=False)
    assert split.origin == "toy train" and calls == [("train", "/r", False, False, False)]


def test_load_split_rejects_an_unknown_data_set_listing_the_choices():
    with pytest.raises(ValueError, match=r"unknown dataset 'cifar100'; choose one of: ") as info:
        load_split("cifar100", "train")
    assert all(name in str(info.value) for name in ("cifar10", "mnist", "smallnorb", "svhn"))
