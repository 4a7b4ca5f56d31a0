"""Image tensors and their transforms: pixel scaling, shifts, padding, crops and affine warps.

Every transform splits its randomness from its arithmetic (:class:`Transform`): ``draw(n, generator)``
makes every random choice for ``n`` images as one parameter tensor, ``apply(images, params)`` uses it.
:class:`~capsedu.data.Batches` draws a whole epoch's parameters before its first batch, which is what
makes an interrupted epoch reproducible. :class:`RandomTransform` s draw; :class:`DeterministicTransform` s
(central crops and pads, for testing) have nothing to draw.

All transforms take ``(B, C, H, W)`` float tensors on any device; a generator may stay on the
CPU when the images are on a GPU, and then gives the same draws whatever the images' device.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

__all__ = [
    "to_float", "draw_shifts", "shift_images", "random_shift", "pad_to", "random_affine",
    "Transform", "RandomTransform", "DeterministicTransform", "RandomShift", "RandomPlacement", "RandomCrop",
    "CenterCrop", "CenterPad", "RandomAffine",
]

Size = Union[int, Tuple[int, int]]  # an int means a square


def to_float(images: torch.Tensor) -> torch.Tensor:
    """``uint8`` ``(N, C, H, W)`` -> ``float32`` in ``[0, 1]``; floating input is assumed scaled and only cast."""
    if images.dim() != 4:
        raise ValueError(f"expected images of shape (N, C, H, W), got {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        return images.to(torch.float32).div_(255.0)
    if images.is_floating_point():
        return images.to(torch.float32)
    raise TypeError(f"expected uint8 or floating images, got {images.dtype}")


def _generator_device(generator: Optional[torch.Generator]) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


def _pair(size: Size, what: str) -> Tuple[int, int]:
    """``size`` as ``(height, width)``, both >= 1."""
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    if h < 1 or w < 1:
        raise ValueError(f"{what} must be >= 1 pixel, got {size!r}")
    return int(h), int(w)


def _check_batch(images: torch.Tensor, params: torch.Tensor) -> None:
    if images.dim() != 4:
        raise ValueError(f"expected images of shape (B, C, H, W), got {tuple(images.shape)}")
    if params.shape[0] != images.shape[0]:
        raise ValueError(f"{params.shape[0]} sets of transform parameters for {images.shape[0]} images")


# ----------------------------------------------------------------------------- shifts and padding


def draw_shifts(
    n: int,
    max_shift: int,
    generator: Optional[torch.Generator] = None,
    device: Union[str, torch.device, None] = None,
) -> torch.Tensor:
    """``n`` integer shifts ``(dx, dy)``, each uniform in ``[-max_shift, max_shift]``: ``int64 (n, 2)``.

    Drawn on the generator's device (CPU for ``None``, i.e. the global generator), then moved
    to ``device``, so a CPU generator gives the same shifts whatever device the images are on.
    """
    if max_shift < 0:
        raise ValueError(f"max_shift must be >= 0, got {max_shift}")
    shifts = torch.randint(-max_shift, max_shift + 1, (n, 2), generator=generator,
                           device=_generator_device(generator))
    return shifts if device is None else shifts.to(device)


def shift_images(images: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Translate each image by its own integer ``(dx, dy)``, filling the uncovered border with 0.

    ``out[b, c, y, x] = images[b, c, y - dy, x - dx]`` (0 where that falls outside), so positive
    ``dx`` moves content right and positive ``dy`` moves it down; content shifted out is lost.

    Args:
        images: ``(B, C, H, W)`` float tensor.
        shifts: ``(B, 2)`` integer tensor of ``(dx, dy)``.
    """
    if images.dim() != 4:
        raise ValueError(f"expected images of shape (B, C, H, W), got {tuple(images.shape)}")
    b, c, h, w = images.shape
    shifts = shifts.to(device=images.device, dtype=torch.long)
    dx, dy = shifts[:, 0:1], shifts[:, 1:2]  # (B, 1)
    rows = torch.arange(h, device=images.device) - dy  # (B, H) source row of each output row
    cols = torch.arange(w, device=images.device) - dx  # (B, W)
    inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]  # (B, H, W)
    # one flat gather with clamped indices; the mask then zeroes what came from outside
    flat = rows.clamp(0, h - 1)[:, :, None] * w + cols.clamp(0, w - 1)[:, None, :]  # (B, H, W)
    out = images.reshape(b, c, h * w).gather(2, flat.reshape(b, 1, h * w).expand(b, c, h * w))
    out = out.reshape(b, c, h, w)
    # where, not multiply: 0 * inf would leak NaN into the border
    return torch.where(inside[:, None], out, out.new_zeros(()))


def random_shift(
    images: torch.Tensor,
    max_shift: int = 2,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """The paper's augmentation: shift each image independently by up to ``max_shift`` pixels.

    Same as ``RandomShift(max_shift)(images, generator)``: ``dx`` and ``dy`` are integers drawn
    uniformly from ``[-max_shift, max_shift]`` by :func:`draw_shifts` (so an identically seeded
    generator reproduces them); the border is zero-filled (:func:`shift_images`).
    ``max_shift=0`` returns ``images`` itself and draws nothing.

    Args:
        images: ``(B, C, H, W)`` floating tensor on any device.
        generator: may live on the CPU even when ``images`` are on a GPU.
    """
    return RandomShift(max_shift)(images, generator)


def pad_to(images: torch.Tensor, size: Size = 40) -> torch.Tensor:
    """Centre ``(B, C, H, W)`` images on a zero canvas: ``(B, C, size_h, size_w)``.

    With an odd margin the extra pixel goes to the right / bottom (:class:`CenterCrop` undoes it).
    """
    sh, sw = _pair(size, "size")
    h, w = images.shape[-2:]
    if sh < h or sw < w:
        raise ValueError(f"size {sh}x{sw} is smaller than the images ({h}x{w})")
    top, left = (sh - h) // 2, (sw - w) // 2
    return F.pad(images, (left, sw - w - left, top, sh - h - top))


# ----------------------------------------------------------------------------- the transform interface


class Transform(abc.ABC):
    """A per-image transform in two halves: ``draw(n, generator)`` returns an ``(n, P)`` tensor holding
    every random choice for ``n`` images, on the generator's device; ``apply(images, params)``
    transforms ``(B, C, H, W)`` float images with ``params[:B]`` and never draws."""

    @abc.abstractmethod
    def draw(self, n: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Parameters for ``n`` images, ``(n, P)``, drawn from ``generator`` (``None``: the global one)."""

    @abc.abstractmethod
    def apply(self, images: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """Transform ``(B, C, H, W)`` images with ``(B, P)`` parameters from :meth:`draw`."""

    def output_shape(self, c: int, h: int, w: int) -> Tuple[int, int, int]:
        """``(C, H, W)`` of the output for ``(c, h, w)`` inputs; raises ``ValueError`` if they do not fit."""
        return c, h, w

    def __call__(self, images: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Draw for these images and apply at once."""
        return self.apply(images, self.draw(images.shape[0], generator))


class RandomTransform(Transform):
    """A transform that makes random choices per image (shifts, crop positions, warps)."""


class DeterministicTransform(Transform):
    """A transform without random choices: it draws ``(n, 0)`` parameters, consumes no randomness, and
    fits wherever a random transform does (e.g. the central test crop beside a random training crop)."""

    def draw(self, n: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        return torch.zeros(n, 0, device=_generator_device(generator))

    def apply(self, images: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        _check_batch(images, params)
        return self.transform(images)

    @abc.abstractmethod
    def transform(self, images: torch.Tensor) -> torch.Tensor:
        """The transform of ``(B, C, H, W)`` images."""


@dataclass(frozen=True)
class RandomShift(RandomTransform):
    """The paper's MNIST augmentation: shift by up to ``max_shift`` pixels per axis, zero-filled.

    Params: ``int64 (n, 2)`` shifts ``(dx, dy)`` from :func:`draw_shifts`; ``max_shift=0`` draws nothing.
    """

    max_shift: int = 2

    def __post_init__(self) -> None:
        if self.max_shift < 0:
            raise ValueError(f"max_shift must be >= 0, got {self.max_shift}")

    def draw(self, n: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        if self.max_shift == 0:  # no randomness to consume, as with no augmentation at all
            return torch.zeros(n, 2, dtype=torch.long, device=_generator_device(generator))
        return draw_shifts(n, self.max_shift, generator)

    def apply(self, images: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        _check_batch(images, params)
        return images if self.max_shift == 0 else shift_images(images, params)


def _offsets(fractions: torch.Tensor, margin: Tuple[int, int], device: torch.device) -> torch.Tensor:
    """Map ``(B, 2)`` fractions in ``[0, 1)`` to integer ``(x, y)`` offsets uniform in ``0..margin``."""
    room = torch.tensor([margin[1] + 1, margin[0] + 1], dtype=torch.float64, device=fractions.device)
    top = torch.tensor([margin[1], margin[0]], device=fractions.device)
    # the clamp only guards against rounding; a fraction below 1 never reaches room
    return torch.minimum((fractions.double() * room).long(), top).to(device)


class _RandomPosition(RandomTransform):
    """Shared draw of the transforms that place a window at a random position: ``float64 (n, 2)``
    fractions of the free margin, so the same draws serve any image size."""

    def draw(self, n: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        return torch.rand(n, 2, generator=generator, device=_generator_device(generator), dtype=torch.float64)


@dataclass(frozen=True)
class RandomPlacement(_RandomPosition):
    """Put each image at a uniformly random position on a larger zero ``canvas`` (whole image kept).

    The paper's section 5.2 training set: every 28x28 digit at a random place on a 40x40 black
    canvas, ``RandomPlacement(40)``. Works for any image no larger than the canvas.

    Params: ``float64 (n, 2)`` fractions in ``[0, 1)`` for ``(x, y)``, scaled to the free margin
    when applied, so the same draws serve any image size.
    """

    canvas: Size = 40

    def __post_init__(self) -> None:
        _pair(self.canvas, "canvas")

    def output_shape(self, c: int, h: int, w: int) -> Tuple[int, int, int]:
        ch, cw = _pair(self.canvas, "canvas")
        if ch < h or cw < w:
            raise ValueError(f"canvas {ch}x{cw} is smaller than the images ({h}x{w})")
        return c, ch, cw

    def apply(self, images: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        _check_batch(images, params)
        h, w = images.shape[-2:]
        _, ch, cw = self.output_shape(images.shape[1], h, w)
        offsets = _offsets(params, (ch - h, cw - w), images.device)  # (B, 2) top-left (x, y) on the canvas
        centred = torch.tensor([(cw - w) // 2, (ch - h) // 2], device=images.device)  # where pad_to puts it
        return shift_images(pad_to(images, (ch, cw)), offsets - centred)


@dataclass(frozen=True)
class RandomCrop(_RandomPosition):
    """Cut a ``size`` window at a uniformly random position out of each image.

    E.g. ``RandomCrop(32)`` on 48x48 smallNORB or ``RandomCrop(24)`` on 32x32 CIFAR-10 training
    images; pair it with :class:`CenterCrop` of the same size for testing.

    Params: ``float64 (n, 2)`` fractions in ``[0, 1)`` for ``(x, y)``, scaled to the free margin.
    """

    size: Size

    def __post_init__(self) -> None:
        _pair(self.size, "size")

    def output_shape(self, c: int, h: int, w: int) -> Tuple[int, int, int]:
        sh, sw = _pair(self.size, "size")
        if sh > h or sw > w:
            raise ValueError(f"crop {sh}x{sw} is larger than the images ({h}x{w})")
        return c, sh, sw

    def apply(self, images: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        _check_batch(images, params)
        h, w = images.shape[-2:]
        _, sh, sw = self.output_shape(images.shape[1], h, w)
        offsets = _offsets(params, (h - sh, w - sw), images.device)  # (B, 2) top-left (x, y) of the window
        # shifting by minus the offset brings the window to the top-left corner, never past the border
        return shift_images(images, -offsets)[..., :sh, :sw]


@dataclass(frozen=True)
class CenterCrop(DeterministicTransform):
    """Cut the central ``size`` window out of each image.

    With an odd margin the extra pixel is cut on the right / bottom, so it undoes :func:`pad_to`.
    """

    size: Size

    def __post_init__(self) -> None:
        _pair(self.size, "size")

    def output_shape(self, c: int, h: int, w: int) -> Tuple[int, int, int]:
        return RandomCrop(self.size).output_shape(c, h, w)

    def transform(self, images: torch.Tensor) -> torch.Tensor:
        h, w = images.shape[-2:]
        _, sh, sw = self.output_shape(images.shape[1], h, w)
        top, left = (h - sh) // 2, (w - sw) // 2
        return images[..., top:top + sh, left:left + sw]


@dataclass(frozen=True)
class CenterPad(DeterministicTransform):
    """Put each image in the middle of a larger zero ``canvas``.

    The test-time view of :class:`RandomPlacement`: e.g. ``CenterPad(40)`` shows 28x28 MNIST test
    digits centred on the 40x40 canvas the model was trained on (:func:`pad_to`).
    """

    canvas: Size = 40

    def __post_init__(self) -> None:
        _pair(self.canvas, "canvas")

    def output_shape(self, c: int, h: int, w: int) -> Tuple[int, int, int]:
        return RandomPlacement(self.canvas).output_shape(c, h, w)

    def transform(self, images: torch.Tensor) -> torch.Tensor:
        _, ch, cw = self.output_shape(images.shape[1], *images.shape[-2:])
        return pad_to(images, (ch, cw))


# ----------------------------------------------------------------------------- affine warps


@dataclass(frozen=True)
class RandomAffine(RandomTransform):
    """An independent random affine warp per image, bilinear, zeros outside.

    Per image: rotation uniform in ``±max_rotation`` degrees, horizontal shear factor uniform
    in ``±max_shear``, x and y scale each uniform in ``scale_range``, and an integer translation
    in ``[-max_translate, max_translate]`` pixels per axis; the identity parameters reproduce
    the input. Pad first (:func:`pad_to`) to leave room.

    Params: ``float64 (n, 6)``: rotation in radians, shear, x scale, y scale, x and y translation
    in pixels. They do not depend on the image size: :meth:`apply` converts them.
    """

    max_rotation: float = 20.0
    max_shear: float = 0.1
    scale_range: Tuple[float, float] = (0.8, 1.2)
    max_translate: int = 6

    def __post_init__(self) -> None:
        lo, hi = self.scale_range
        if self.max_rotation < 0 or self.max_shear < 0 or self.max_translate < 0 or not 0 < lo <= hi:
            raise ValueError(f"need max_rotation, max_shear, max_translate >= 0 and 0 < scale_range[0] <= "
                             f"scale_range[1], got {self}")

    def draw(self, n: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        dev = _generator_device(generator)

        def uniform(lo: float, hi: float) -> torch.Tensor:
            return lo + (hi - lo) * torch.rand(n, generator=generator, device=dev, dtype=torch.float64)

        # this draw order is part of the generated affine test set's definition: keep it
        angle = torch.deg2rad(uniform(-self.max_rotation, self.max_rotation))
        shear = uniform(-self.max_shear, self.max_shear)
        sx, sy = uniform(*self.scale_range), uniform(*self.scale_range)
        t = torch.randint(-self.max_translate, self.max_translate + 1, (n, 2), generator=generator,
                          device=dev).double()
        return torch.stack([angle, shear, sx, sy, t[:, 0], t[:, 1]], dim=1)  # (n, 6)

    def apply(self, images: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        _check_batch(images, params)
        theta = _affine_theta(params, *images.shape[-2:]).to(device=images.device, dtype=images.dtype)
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)  # (B, H, W, 2)
        return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _affine_theta(params: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``(n, 2, 3)`` float64 matrices for ``F.affine_grid`` (``align_corners=False``) from :class:`RandomAffine` params.

    The transform is built in pixel units about the image centre,
    ``p_out = R(angle) @ Shear @ diag(sx, sy) @ p_in + t``, then inverted (``affine_grid``
    maps output positions to input positions) and rescaled to normalised coordinates, so
    non-square images rotate without distortion and translations are whole pixels.
    """
    params = params.double()
    n, dev = params.shape[0], params.device
    angle, shear, sx, sy = params[:, 0], params[:, 1], params[:, 2], params[:, 3]
    t = params[:, 4:6]  # (n, 2)
    cos, sin, zero, one = torch.cos(angle), torch.sin(angle), torch.zeros_like(angle), torch.ones_like(angle)
    rot = torch.stack([cos, -sin, sin, cos], -1).view(n, 2, 2)
    shr = torch.stack([one, shear, zero, one], -1).view(n, 2, 2)
    scl = torch.stack([sx, zero, zero, sy], -1).view(n, 2, 2)
    inv = torch.linalg.inv(rot @ shr @ scl)  # (n, 2, 2)
    to_norm = torch.tensor([2.0 / width, 2.0 / height], dtype=torch.float64, device=dev)  # pixels -> [-1, 1]
    lin = to_norm[:, None] * inv / to_norm[None, :]  # D @ inv @ D^-1
    offset = -to_norm * (inv @ t.unsqueeze(-1)).squeeze(-1)  # -D @ inv @ t
    return torch.cat([lin, offset.unsqueeze(-1)], dim=-1)


def random_affine(
    images: torch.Tensor,
    max_rotation: float = 20.0,
    max_shear: float = 0.1,
    scale_range: Sequence[float] = (0.8, 1.2),
    max_translate: int = 6,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Warp every ``(B, C, H, W)`` image by its own random affine transform (see :class:`RandomAffine`).

    ``generator`` may live on the CPU even when ``images`` are on a GPU.
    """
    return RandomAffine(max_rotation, max_shear, tuple(scale_range), max_translate)(images, generator)
