"""capsedu.teaching.architecture: per-layer shapes, parameters, multiply-adds and timings."""
import pytest
import torch

from capsedu import BaselineCNN, CapsNet
from capsedu.teaching.architecture import (conv_linear_macs, format_table, layer_table, routing_macs,
                                           routing_memory_bytes, time_layers, totals)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def paper_rows():
    torch.manual_seed(0)
    return {r.name: r for r in layer_table(CapsNet("paper"))}


def test_paper_layer_params_match_hand_arithmetic(paper_rows):
    assert paper_rows["conv1"].params == 9 * 9 * 1 * 256 + 256 == 20_992
    assert paper_rows["PrimaryCaps"].params == 9 * 9 * 256 * 256 + 256 == 5_308_672
    assert paper_rows["DigitCaps u_hat"].params == 1152 * 10 * 16 * 8 == 1_474_560
    assert paper_rows["decoder"].params == (160 * 512 + 512) + (512 * 1024 + 1024) + (1024 * 784 + 784) == 1_411_344


def test_paper_layer_shapes_come_from_forward_pass(paper_rows):
    assert paper_rows["conv1"].output_shape == (256, 20, 20)
    assert paper_rows["PrimaryCaps"].output_shape == (6 * 6 * 32, 8)
    assert paper_rows["DigitCaps u_hat"].output_shape == (1152, 10, 16)
    assert paper_rows["routing (r=3)"].output_shape == (10, 16)
    assert paper_rows["decoder"].output_shape == (1, 28, 28)


def test_paper_multiply_adds_per_layer(paper_rows):
    assert paper_rows["conv1"].macs == 20 * 20 * 256 * 81 == 8_294_400
    assert paper_rows["PrimaryCaps"].macs == 6 * 6 * 256 * (81 * 256) == 191_102_976
    assert paper_rows["DigitCaps u_hat"].macs == 1_474_560
    assert paper_rows["routing (r=3)"].macs == 5 * 1152 * 10 * 16
    assert paper_rows["decoder"].macs == 160 * 512 + 512 * 1024 + 1024 * 784 == 1_409_024


def test_totals_with_and_without_decoder(paper_rows):
    t = totals(list(paper_rows.values()))
    assert t["params"] == 8_215_568
    assert t["params_without_decoder"] == 6_804_224
    assert t["macs"] - t["macs_without_decoder"] == 1_409_024


def test_format_table_lists_every_row_and_the_total(paper_rows):
    text = format_table(list(paper_rows.values()))
    lines = text.splitlines()
    assert len(lines) == 1 + len(paper_rows) + 1
    assert lines[-1].startswith("total") and "8,215,568" in lines[-1]
    assert "1152x10x16" in text


def test_routing_macs_skip_agreement_in_last_iteration():
    assert routing_macs(1152, 10, 16, 1) == 1152 * 10 * 16
    assert routing_macs(1152, 10, 16, 3) == 3 * 184_320 + 2 * 184_320


def test_routing_memory_is_batch_times_predictions():
    assert routing_memory_bytes(128, 1152, 10, 16) == 128 * 1152 * 10 * 16 * 4
    assert routing_memory_bytes(1, 2, 3, 4, bytes_per_value=2) == 48


def test_conv_linear_macs_counts_every_convolution_and_linear_layer():
    tiny = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten(), torch.nn.Linear(18, 4))
    assert conv_linear_macs(tiny, (1, 5, 5)) == 2 * 3 * 3 * 9 + 18 * 4
    paper = {r.name: r.macs for r in layer_table(CapsNet("paper"))}
    assert conv_linear_macs(CapsNet("paper")) == paper["conv1"] + paper["PrimaryCaps"] + paper["decoder"]
    # the paper's baseline: three 5x5 'same' convolutions at 28x28, then FC 328, 192, 10
    expected = 784 * 25 * (1 * 256 + 256 * 256 + 256 * 128) + 128 * 784 * 328 + 328 * 192 + 192 * 10
    assert conv_linear_macs(BaselineCNN()) == expected


def test_layer_table_rejects_other_image_size():
    with pytest.raises(ValueError, match="image_size=32"):
        layer_table(CapsNet("small"), image_size=32)


def test_layer_table_follows_config_of_bigger_images():
    rows = {r.name: r for r in layer_table(CapsNet("small", image_size=36, reconstruction=False))}
    assert rows["conv1"].output_shape == (64, 28, 28)
    assert rows["PrimaryCaps"].output_shape == (10 * 10 * 16, 8)  # (28 - 9) // 2 + 1 = 10
    assert "decoder" not in rows


def test_time_layers_reports_every_stage():
    torch.manual_seed(0)
    times = time_layers(CapsNet("small").eval(), batch_size=2, repeats=1)
    assert set(times) == {"conv1", "PrimaryCaps", "DigitCaps u_hat", "routing", "decoder"}
    assert all(t > 0 for t in times.values())
