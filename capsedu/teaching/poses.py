"""2-D poses, a tiny scene graph and inverse graphics by part votes (chapter 1).

A *pose* here is a 3x3 homogeneous matrix ``[[a, b, tx], [c, d, ty], [0, 0, 1]]`` that maps
coordinates in an object's own frame to coordinates in its parent's frame (rotation, scale,
translation). A scene graph stores, for every part, its pose *relative to the whole*; drawing
the scene composes poses down the tree (computer graphics). Inverse graphics goes the other
way: from the observed poses of the parts, each part predicts ("votes for") the pose of the
whole, ``T_whole = T_part @ inv(T_part_in_whole)``. When the parts are arranged correctly the
votes agree; when they are scrambled they do not. This is the geometric idea behind the
prediction vectors ``u_hat_{j|i} = W_ij u_i`` of capsule networks (Eq. 2 of the paper).
"""
from __future__ import annotations

import math
from typing import Dict, Mapping, Optional

import numpy as np
import torch
from matplotlib.axes import Axes

from .images import ArrayLike, as_numpy

__all__ = ["pose2d", "pose_params", "compose", "FACE_PARTS", "place_parts", "part_votes", "vote_spread",
           "draw_face_scene"]


def pose2d(theta: float = 0.0, tx: float = 0.0, ty: float = 0.0, scale: float = 1.0) -> torch.Tensor:
    """Homogeneous 3x3 pose: rotate by ``theta`` (radians), scale, then translate by ``(tx, ty)``."""
    c, s = math.cos(theta) * scale, math.sin(theta) * scale
    return torch.tensor([[c, -s, tx], [s, c, ty], [0.0, 0.0, 1.0]], dtype=torch.float64)


def pose_params(pose: torch.Tensor) -> Dict[str, float]:
    """Read ``theta, tx, ty, scale`` back from a similarity pose (inverse of :func:`pose2d`)."""
    a, c = float(pose[0, 0]), float(pose[1, 0])
    return {"theta": math.atan2(c, a), "tx": float(pose[0, 2]), "ty": float(pose[1, 2]), "scale": math.hypot(a, c)}


def compose(*poses: torch.Tensor) -> torch.Tensor:
    """Matrix product ``poses[0] @ poses[1] @ ...``: a child's pose in the frame of the first parent."""
    out = torch.eye(3, dtype=torch.float64)
    for p in poses:
        out = out @ p
    return out


#: The scene graph of a cartoon face: each part's pose relative to the face (face frame: unit
#: circle, y up). Two eyes, a nose and a mouth; the mouth is wider than tall (scale in x only is
#: not a similarity, so the mouth's shape is drawn wide instead and its pose stays a similarity).
FACE_PARTS: Dict[str, torch.Tensor] = {
    "left eye": pose2d(0.0, -0.38, 0.30, 0.18),
    "right eye": pose2d(0.0, 0.38, 0.30, 0.18),
    "nose": pose2d(0.0, 0.0, -0.02, 0.22),
    "mouth": pose2d(0.0, 0.0, -0.45, 0.40),
}


def place_parts(whole: torch.Tensor, parts: Mapping[str, torch.Tensor] = FACE_PARTS) -> Dict[str, torch.Tensor]:
    """Graphics: the pose of every part in the picture, ``whole @ part_in_whole``."""
    return {name: compose(whole, rel) for name, rel in parts.items()}


def part_votes(observed: Mapping[str, torch.Tensor],
               parts: Mapping[str, torch.Tensor] = FACE_PARTS) -> Dict[str, torch.Tensor]:
    """Inverse graphics: each observed part predicts the pose of the whole, ``T_part @ inv(T_part_in_whole)``."""
    return {name: observed[name] @ torch.linalg.inv(parts[name]) for name in observed}


def vote_spread(votes: Mapping[str, torch.Tensor]) -> float:
    """How much the votes disagree: mean distance of the (3x3) vote matrices from their mean.

    Zero when every part predicts exactly the same whole; large for scrambled parts.
    """
    stack = torch.stack(list(votes.values()))  # (n_parts, 3, 3)
    return float((stack - stack.mean(0)).flatten(1).norm(dim=1).mean())


# ----------------------------------------------------------------------------- drawing

def _part_outline(name: str) -> np.ndarray:
    """Outline ``(2, n)`` of a cartoon-face part in its own frame (unit size); the face itself is a circle."""
    t = np.linspace(0, 2 * np.pi, 40)
    if name.endswith("eye"):
        return np.stack([np.cos(t), 0.6 * np.sin(t)])
    if name == "nose":
        return np.array([[0.0, -0.6, 0.6, 0.0], [1.0, -0.6, -0.6, 1.0]])
    if name == "mouth":
        u = np.linspace(-1, 1, 30)
        upper, lower = 0.35 * u ** 2 - 0.15, 0.5 * u[::-1] ** 2 - 0.35     # a closed smile
        return np.stack([np.concatenate([u, u[::-1]]), np.concatenate([upper, lower])])
    return np.stack([np.cos(t), np.sin(t)])


def _apply_pose(pose: ArrayLike, xy: np.ndarray) -> np.ndarray:
    p = as_numpy(pose)
    return p[:2, :2] @ xy + p[:2, 2:3]


def draw_face_scene(ax: Axes, whole: Optional[ArrayLike] = None, parts: Optional[Mapping[str, ArrayLike]] = None,
                    votes: Optional[Mapping[str, ArrayLike]] = None, color: str = "C0") -> Dict[str, object]:
    """Draw a face scene: the face outline under pose ``whole``, each part under its pose in the picture.

    ``whole``: 3x3 pose of the face (``None``: no outline); ``parts``: name -> 3x3 pose in the picture
    (e.g. :func:`capsedu.teaching.poses.place_parts`); ``votes``: name -> predicted face pose, drawn
    as dashed outlines, one per part. Returns ``{"outline": line, "parts": {name: line}, "votes": {name: line}}``.
    """
    out: Dict[str, object] = {"outline": None, "parts": {}, "votes": {}}
    if whole is not None:
        xy = _apply_pose(whole, _part_outline("face"))
        out["outline"], = ax.plot(xy[0], xy[1], color=color, lw=2)
    for name, pose in (parts or {}).items():
        xy = _apply_pose(pose, _part_outline(name))
        out["parts"][name], = ax.plot(xy[0], xy[1], color="k", lw=1.5)
    for k, (name, pose) in enumerate((votes or {}).items()):
        xy = _apply_pose(pose, _part_outline("face"))
        out["votes"][name], = ax.plot(xy[0], xy[1], ls="--", lw=1, color=f"C{k + 1}", label=f"vote of {name}")
    ax.set_aspect("equal")
    return out
