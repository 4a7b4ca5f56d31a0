import math

import pytest
import torch

from capsedu import capsule_length, squash
from capsedu.functional import squash_scale, squash_vjp


def literal_squash(s):
    """Eq. 1 written out for one vector, in float64 Python arithmetic."""
    norm = math.sqrt(sum(float(x) ** 2 for x in s))
    if norm == 0:
        return [0.0] * len(s)
    scale = norm ** 2 / (1 + norm ** 2) / norm
    return [float(x) * scale for x in s]


def test_squash_matches_equation_1_vector_by_vector(rng):
    s = torch.randn(6, 5, 8, generator=rng, dtype=torch.float64) * 3
    v = squash(s)
    for idx in range(6):
        for j in range(5):
            assert v[idx, j].tolist() == pytest.approx(literal_squash(s[idx, j].tolist()), rel=1e-6, abs=1e-12)


def test_squash_keeps_direction_and_maps_length_to_n2_over_1_plus_n2(rng):
    s = torch.randn(100, 16, generator=rng, dtype=torch.float64) * torch.logspace(-2, 2, 100, dtype=torch.float64)[:, None]
    v = squash(s)
    n = s.norm(dim=-1)
    torch.testing.assert_close(v.norm(dim=-1), n ** 2 / (1 + n ** 2))
    cos = torch.nn.functional.cosine_similarity(v, s, dim=-1)
    torch.testing.assert_close(cos, torch.ones_like(cos))


def test_squash_lengths_stay_below_one_and_grow_with_input_length():
    norms = torch.logspace(-3, 3, 200, dtype=torch.float64)
    s = torch.zeros(200, 4, dtype=torch.float64)
    s[:, 0] = norms
    lengths = squash(s).norm(dim=-1)
    assert (lengths < 1).all()
    assert (lengths[1:] > lengths[:-1]).all()
    assert lengths[-1] > 0.999999  # long vectors -> almost unit length
    assert lengths[0] < 1.1e-6     # short vectors -> almost zero (|v| ~ |s|^2)


def test_squash_of_zero_vector_is_zero_with_finite_zero_gradient():
    s = torch.zeros(3, 8, requires_grad=True)
    v = squash(s)
    assert torch.equal(v, torch.zeros_like(v))
    v.sum().backward()
    assert torch.isfinite(s.grad).all()
    assert torch.equal(s.grad, torch.zeros_like(s.grad))


def test_squash_gradient_is_finite_for_tiny_vectors():
    s = torch.full((5, 8), 1e-20, requires_grad=True)
    squash(s).pow(2).sum().backward()
    assert torch.isfinite(s.grad).all()


def test_squash_gradient_matches_finite_differences():
    s = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(squash, (s,))


def test_squash_of_one_dimensional_capsules_is_sign_x_times_x2_over_1_plus_x2():
    x = torch.linspace(-5, 5, 101, dtype=torch.float64)
    v = squash(x.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(v, torch.sign(x) * x ** 2 / (1 + x ** 2))


def test_squash_along_a_chosen_dim(rng):
    s = torch.randn(2, 8, 7, generator=rng)
    torch.testing.assert_close(squash(s, dim=1), squash(s.transpose(1, 2)).transpose(1, 2))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_squash_keeps_half_precision_dtype_and_computes_in_float32(dtype):
    s = torch.randn(4, 8, generator=torch.Generator().manual_seed(0)).to(dtype)
    v = squash(s)
    assert v.dtype == dtype
    torch.testing.assert_close(v, squash(s.float()).to(dtype))


def test_squash_of_float64_stays_float64(rng):
    s = torch.randn(4, 8, generator=rng, dtype=torch.float64)
    v = squash(s, eps=0.0)
    assert v.dtype == torch.float64  # and computed in float64: float32 would be ~1e-7 off
    torch.testing.assert_close(v.norm(dim=-1), s.norm(dim=-1) ** 2 / (1 + s.norm(dim=-1) ** 2), rtol=1e-12, atol=0)


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8, torch.bool])
def test_squash_rejects_integer_and_bool_tensors_naming_s_and_the_dtype(dtype):
    with pytest.raises(ValueError, match=rf"s must be a floating-point tensor.*{dtype}"):
        squash(torch.ones(3, 4, dtype=dtype))


def test_squash_of_a_1e30_long_float32_vector_is_finite_and_unit_length():
    s = torch.tensor([[1e30, -2e30, 0.0, 5e29], [3e38, 3e38, 3e38, 3e38]], requires_grad=True)
    v = squash(s)
    assert torch.isfinite(v).all()
    torch.testing.assert_close(v.norm(dim=-1), torch.ones(2))
    torch.testing.assert_close(v[0], (s[0] / 2.29128784747792e30).detach())  # direction kept
    g = torch.randn(2, 4, generator=torch.Generator().manual_seed(0))
    (grad,) = torch.autograd.grad(v, s, g)
    assert torch.isfinite(grad).all()
    torch.testing.assert_close(squash_vjp(s.detach(), g), grad)


def test_squash_of_ordinary_float32_vectors_is_the_plain_formula_bit_for_bit(rng):
    # the overflow guard must not cost float32 accuracy where ||s||^2 is representable
    s = torch.randn(200, 16, generator=rng) * torch.logspace(-15, 15, 200)[:, None]
    n2 = (s * s).sum(dim=-1, keepdim=True)
    assert torch.equal(squash(s), s * squash_scale(n2))
    reference = squash(s.double())
    torch.testing.assert_close(squash(s), reference.float(), rtol=2e-6, atol=0)


def test_squash_rejects_a_scalar():
    with pytest.raises(ValueError, match="scalar"):
        squash(torch.tensor(1.0))


def test_capsule_length_is_euclidean_norm(rng):
    v = torch.randn(4, 10, 16, generator=rng)
    torch.testing.assert_close(capsule_length(v), v.norm(dim=-1))


@pytest.mark.parametrize("dim", [-1, 1])
def test_closed_form_squash_gradient_equals_autograd_including_the_zero_vector(dim):
    gen = torch.Generator().manual_seed(5)
    scales = torch.logspace(-6, 2, 12, dtype=torch.float64).view(12, 1, 1)  # from ~0 to long vectors
    s = torch.randn(12, 7, 16, generator=gen, dtype=torch.float64) * scales
    zero = (0, 0) if dim == -1 else (0, slice(None), 0)  # one whole capsule vector along `dim`
    s[zero] = 0.0
    g = torch.randn(s.shape, generator=gen, dtype=torch.float64)
    s.requires_grad_(True)
    (expected,) = torch.autograd.grad(squash(s, dim=dim), s, g)
    got = squash_vjp(s.detach(), g, dim=dim)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    assert torch.all(got[zero] == 0)  # zero vector: zero Jacobian


@pytest.mark.parametrize("dtype, scale", [(torch.float64, 1e200), (torch.float32, 1e25)])
def test_closed_form_squash_gradient_equals_autograd_for_vectors_too_long_to_square(dtype, scale):
    gen = torch.Generator().manual_seed(6)
    s = (torch.randn(5, 16, generator=gen, dtype=torch.float64) * scale).to(dtype).requires_grad_(True)
    g = torch.randn(5, 16, generator=gen, dtype=torch.float64).to(dtype)
    (expected,) = torch.autograd.grad(squash(s), s, g)
    got = squash_vjp(s.detach(), g)
    assert torch.isfinite(got).all() and (got != 0).any()
    torch.testing.assert_close(got, expected)


def test_capsule_length_keeps_float64_and_measures_half_precision_in_float32(rng):
    v = torch.randn(3, 10, 16, generator=rng, dtype=torch.float64)
    assert capsule_length(v).dtype == torch.float64
    assert capsule_length(v.half()).dtype == torch.float32
    with pytest.raises(ValueError, match="v must be a floating-point tensor"):
        capsule_length(torch.ones(2, 3, dtype=torch.int64))


@pytest.mark.parametrize("eps", [-1.0, float("nan"), float("inf")])
def test_a_negative_or_non_finite_eps_is_refused_instead_of_returning_nan(eps):
    s = torch.tensor([[0.0, 0.0], [1e-5, 0.0], [3.0, 4.0]])
    for call in (lambda: squash(s, eps=eps), lambda: capsule_length(s, eps=eps), lambda: squash_scale(s, eps=eps)):
        with pytest.raises(ValueError, match=r"eps must be a finite number >= 0.0"):
            call()


@pytest.mark.parametrize("magnitude", [1e-20, 1e-4, 1.0, 1e8, 1e15, 1e16, 1e17, 1e19, 1e30, 1e37])
def test_squash_vjp_stays_finite_and_equals_autograd_from_tiny_to_huge_float32_vectors(magnitude):
    # huge vectors are rescaled by k = 2^-100, whose square underflows in float32: f' must not be formed alone
    s = torch.randn(64, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * magnitude
    g = torch.randn(64, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    s32 = s.float()
    exact = s32.double().requires_grad_()
    (reference,) = torch.autograd.grad(squash(exact), exact, g)
    got = squash_vjp(s32, g.float())
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got.double(), reference, rtol=1e-5, atol=1e-5 * float(reference.abs().max()))


def test_routing_gradients_stay_finite_for_predictions_of_1e16():
    from capsedu import dynamic_routing

    u_hat = (torch.randn(2, 30, 10, 4, generator=torch.Generator().manual_seed(2)) * 1e16).requires_grad_()
    dynamic_routing(u_hat, 3).sum().backward()
    assert torch.isfinite(u_hat.grad).all()
