"""capsedu.teaching.affine: warping one digit, both models' predictions, the accuracy sweep, the widget."""
import pytest
import torch

from capsedu.data.transforms import pad_to, to_float
from capsedu.models import BaselineCNN, CapsNet
from capsedu.teaching.affine import accuracy_sweep, predict, warp


@pytest.fixture(scope="module")
def digit():
    g = torch.Generator().manual_seed(0)
    image = torch.zeros(1, 1, 28, 28, dtype=torch.uint8)
    image[0, 0, 6:22, 12:16] = 255                       # a vertical bar
    image[0, 0, 6:9, 9:19] = (torch.rand(3, 10, generator=g) * 255).to(torch.uint8)
    return image


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return (CapsNet("small", image_size=40).eval(), BaselineCNN(image_size=40, channels=(8, 8, 8)).eval())


def test_the_identity_warp_only_centres_the_digit_on_the_canvas(digit):
    assert torch.allclose(warp(digit), pad_to(to_float(digit), 40), atol=1e-6)


def test_a_quarter_turn_rotates_the_canvas_by_ninety_degrees(digit):
    turned = warp(digit, rotation=90)
    padded = pad_to(to_float(digit), 40)
    best = min((turned - torch.rot90(padded, k, dims=(2, 3))).abs().max().item() for k in (1, -1))
    assert best < 1e-4
    assert (turned - padded).abs().max() > 0.5


def test_half_scale_halves_the_digits_extent(digit):
    def height(img):
        rows = (img[0, 0] > 0.5).any(dim=1).nonzero()
        return int(rows.max() - rows.min() + 1)

    assert abs(height(warp(digit, scale=0.5)) - height(warp(digit)) / 2) <= 1


def test_a_non_positive_scale_is_refused_by_name(digit):
    with pytest.raises(ValueError, match="scale"):
        warp(digit, scale=0)


def test_predict_reports_each_models_own_argmax_and_reconstructs_the_capsnets_class(digit, models):
    capsnet, baseline = models
    image = warp(digit, rotation=15)
    p = predict(capsnet, baseline, image)
    assert p["capsnet_class"] == int(capsnet(image).lengths.argmax())
    assert p["baseline_class"] == int(baseline(image).argmax())
    assert torch.isclose(p["baseline_probs"].sum(), torch.tensor(1.0))
    assert p["reconstruction"].shape == (1, 40, 40)


def test_the_sweep_at_the_identity_is_the_plain_accuracy_on_centred_digits(digit, models):
    capsnet, baseline = models
    images = digit.repeat(6, 1, 1, 1)
    labels = torch.tensor([0, 1, 2, 3, 4, 5])
    sweep = accuracy_sweep({"CapsNet": capsnet, "CNN": baseline}, images, labels, sweeps={"rotation": (0, 30)})
    plain = (capsnet(pad_to(to_float(images), 40)).lengths.argmax(1) == labels).float().mean().item()
    assert sweep["rotation"]["values"].tolist() == [0.0, 30.0]
    assert sweep["rotation"]["CapsNet"][0] == pytest.approx(plain)


def test_the_widget_redraws_when_the_rotation_slider_moves(digit, models):
    pytest.importorskip("ipywidgets")
    from capsedu.teaching.affine import affine_widget

    box = affine_widget(*models, digit.repeat(2, 1, 1, 1))
    upright = box.state["image"].clone()
    box.update(rotation=45)
    assert (box.state["image"] - upright).abs().max() > 0.5
    assert "rotation 30 degrees" in box.static_html()


def test_the_widget_runs_with_the_capsnet_alone_on_the_digits_own_canvas(digit):
    pytest.importorskip("ipywidgets")
    from capsedu.teaching.affine import affine_widget

    torch.manual_seed(0)
    box = affine_widget(CapsNet("small").eval(), None, digit.repeat(2, 1, 1, 1), canvas=28)
    assert box.state["image"].shape == (1, 1, 28, 28) and box.state["baseline_class"] is None
    assert "CNN" not in box.static_html()
