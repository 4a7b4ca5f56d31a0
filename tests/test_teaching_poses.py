"""capsedu.teaching.poses: 2-D pose matrices, the face scene graph and parts voting for the whole."""
import math

import pytest
import torch

from capsedu.teaching import poses


def test_pose_params_inverts_pose2d():
    p = poses.pose2d(0.4, 1.0, -2.0, 1.5)
    assert poses.pose_params(p) == pytest.approx({"theta": 0.4, "tx": 1.0, "ty": -2.0, "scale": 1.5})


def test_compose_adds_rotations_and_multiplies_scales():
    both = poses.compose(poses.pose2d(0.3, scale=2.0), poses.pose2d(0.5, scale=0.5))
    assert torch.allclose(both, poses.pose2d(0.8))


def test_votes_agree_only_for_a_real_face():
    p = poses.pose2d(math.radians(30), 1.0, -2.0, 1.5)
    votes = poses.part_votes(poses.place_parts(p))
    assert poses.vote_spread(votes) < 1e-10
    assert torch.allclose(votes["mouth"], p)
    names = list(poses.FACE_PARTS)
    observed = poses.place_parts(p)
    scrambled = {n: observed[m] for n, m in zip(names, names[1:] + names[:1])}
    assert poses.vote_spread(poses.part_votes(scrambled)) > 0.5
