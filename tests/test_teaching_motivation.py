"""capsedu.teaching.motivation: the chapter-1 toys (1-D detectors, the face of parts, a pooling CNN)."""
import pytest
import torch

from capsedu.teaching import motivation as mot


def test_1d_example_presence_is_invariant_and_position_is_equivariant():
    m1 = mot.detect_1d(torch.tensor([0.0, 3, 2, 0, 0]))
    m2 = mot.detect_1d(torch.tensor([0.0, 0, 3, 2, 0]))
    p1, pos1 = mot.presence_and_position_1d(m1)
    p2, pos2 = mot.presence_and_position_1d(m2)
    assert p1.round().tolist() == p2.round().tolist() == [0, 1, 0, 0]
    assert m1[1].round().tolist() == [0, 1, 0, 0] and m2[1].round().tolist() == [0, 0, 1, 0]
    assert pos2[1] - pos1[1] == pytest.approx(1.0, abs=1e-3)


def test_max_pooling_cannot_tell_face_from_scrambled_parts_but_readout_can():
    a = mot.detect_parts(mot.face_image(mot.FACE_LAYOUT))
    b = mot.detect_parts(mot.face_image(mot.SCRAMBLED_LAYOUT))
    assert torch.equal(mot.max_pool_presence(a), mot.max_pool_presence(b))
    assert mot.max_pool_presence(a).tolist() == [1.0, 1.0, 1.0]
    ra, rb = mot.capsule_readout(a), mot.capsule_readout(b)
    assert ra["count"].tolist() == rb["count"].tolist() == [2, 1, 1]
    assert not torch.equal(ra["positions"], rb["positions"])


def test_face_image_rejects_parts_off_the_canvas():
    with pytest.raises(ValueError, match="does not fit"):
        mot.face_image(shift=(0, 20))


def test_part_centres_are_the_middle_of_each_template():
    positions = torch.tensor([[0, 8, 7], [1, 11, 13], [2, 18, 10]])   # eye 3x3, nose 4x1, mouth 2x7
    centres = mot.part_centres(positions)
    assert centres.tolist() == [[9.0, 8.0], [12.5, 13.0], [18.5, 13.0]]


def test_face_readout_moves_with_the_shift_while_presence_stays():
    still, moved = mot.face_readout(), mot.face_readout(shift=(-2, 3))
    assert torch.equal(still["presence"], moved["presence"])
    assert torch.equal(moved["image"], mot.face_image(shift=(-2, 3)))
    assert moved["centre"].tolist() == pytest.approx((still["centre"] + torch.tensor([-2.0, 3.0])).tolist())
    assert torch.allclose(moved["centres"] - still["centres"], torch.tensor([-2.0, 3.0], dtype=torch.float64))


def test_scramble_patches_permutes_quadrants_and_validates():
    x = torch.arange(16.0).view(1, 4, 4)
    y = mot.scramble_patches(x, grid=2)
    assert torch.equal(y[0, :2, :2], x[0, 2:, 2:]) and torch.equal(y[0, 2:, 2:], x[0, :2, :2])
    assert torch.equal(mot.scramble_patches(x, 2, perm=[0, 1, 2, 3]), x)
    with pytest.raises(ValueError):
        mot.scramble_patches(x, 2, perm=[0, 0, 1, 2])


def test_displace_top_half_moves_only_the_top():
    x = torch.rand(2, 1, 6, 6, generator=torch.Generator().manual_seed(0))
    y = mot.displace_top_half(x, 2)
    assert torch.equal(y[..., 3:, :], x[..., 3:, :])
    assert torch.equal(y[..., :3, 2:], x[..., :3, :4]) and (y[..., :3, :2] == 0).all()
    assert torch.equal(mot.displace_top_half(x, 0), x)


def test_pooling_cnn_shapes_and_short_training_reduces_loss():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convolutions: one thread is fastest, and immune to busy shared CPUs
    try:
        g = torch.Generator().manual_seed(0)
        x = torch.rand(64, 1, 28, 28, generator=g)
        y = (x[:, 0, :14].mean((1, 2)) > x[:, 0, 14:].mean((1, 2))).long()  # learnable toy labels
        model, losses = mot.train_pooling_cnn(x, y, steps=25, batch_size=32)
    finally:
        torch.set_num_threads(threads)
    assert torch.get_num_threads() == threads
    assert model(x).shape == (64, 10) and model.features(x).shape == (64, 32, 8, 8)
    assert model.pooled(x).shape == (64, 32)
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5
