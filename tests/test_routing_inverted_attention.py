"""Inverted dot-product attention routing (Tsai et al., 2020) against a literal loop over Procedure 1."""
import math

import pytest
import torch

import capsedu.routings.inverted_attention as inverted_module
from capsedu.routings import InvertedAttentionRouting, inverted_attention_routing
from capsedu.routings.inverted_attention import inverted_attention_routing_fast


def literal_layer_norm(p, gamma, beta, eps):
    mean = sum(float(x) for x in p) / len(p)
    var = sum((float(x) - mean) ** 2 for x in p) / len(p)
    return torch.stack([(p[h] - mean) / math.sqrt(var + eps) * gamma[h] + beta[h] for h in range(len(p))])


def literal_inverted_attention(u_hat, iterations, gamma, beta, eps, w, b):
    """Lines 3-6 of Procedure 1 with loops over examples, children and parents (float64), then the class score."""
    batch, n_in, n_out, d = u_hat.shape
    vs, rs = [], []
    for n in range(batch):
        p = [torch.zeros(d, dtype=u_hat.dtype) for _ in range(n_out)]  # "set to 0 initially"
        for _ in range(iterations):
            a = [[float(p[j] @ u_hat[n, i, j]) / math.sqrt(d) for j in range(n_out)] for i in range(n_in)]  # Eq. 2
            r = [[math.exp(a[i][j]) / sum(math.exp(x) for x in a[i]) for j in range(n_out)]
                 for i in range(n_in)]                                                                  # Eq. 3
            p = [sum(r[i][j] * u_hat[n, i, j] for i in range(n_in)) for j in range(n_out)]              # line 5
            p = [literal_layer_norm(p[j], gamma, beta, eps) for j in range(n_out)]                       # line 6
        v = []
        for j in range(n_out):
            presence = 1 / (1 + math.exp(-(float(w @ p[j]) + b)))
            v.append(presence * p[j] / math.sqrt(float(p[j] @ p[j])))
        vs.append(torch.stack(v))
        rs.append(torch.tensor(r, dtype=u_hat.dtype))
    return torch.stack(vs), torch.stack(rs)


def _routing_with_random_parameters(rng, n_in, n_out, d):
    routing = InvertedAttentionRouting(n_in, n_out, d).double()
    with torch.no_grad():
        for parameter in routing.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=rng, dtype=torch.float64))
    return routing


@pytest.mark.parametrize("iterations", [1, 2, 3])
def test_inverted_attention_routing_matches_a_literal_loop(rng, iterations):
    u_hat = torch.randn(2, 5, 3, 4, generator=rng, dtype=torch.float64)
    routing = _routing_with_random_parameters(rng, 5, 3, 4)
    v, r = routing(u_hat, iterations, return_couplings=True)
    v_ref, r_ref = literal_inverted_attention(u_hat, iterations, routing.norm.weight.detach(),
                                              routing.norm.bias.detach(), routing.norm.eps,
                                              routing.score.weight.detach()[0], float(routing.score.bias.detach()))
    torch.testing.assert_close(v, v_ref)
    torch.testing.assert_close(r, r_ref)


def test_the_first_pass_routes_uniformly_and_later_passes_do_not(rng):
    u_hat = torch.randn(2, 6, 4, 5, generator=rng, dtype=torch.float64)
    routing = InvertedAttentionRouting(6, 4, 5).double()
    _, r1 = routing(u_hat, 1, return_couplings=True)
    _, r3 = routing(u_hat, 3, return_couplings=True)
    torch.testing.assert_close(r1, torch.full_like(r1, 1 / 4))
    assert (r3 - 1 / 4).abs().max() > 0.01
    torch.testing.assert_close(r3.sum(dim=-1), torch.ones(2, 6, dtype=torch.float64))


def test_inverted_attention_routing_gradients_match_finite_differences(rng):
    u_hat = torch.randn(2, 4, 3, 4, generator=rng, dtype=torch.float64, requires_grad=True)
    gamma = (1 + 0.1 * torch.randn(4, generator=rng, dtype=torch.float64)).requires_grad_()
    beta = (0.1 * torch.randn(4, generator=rng, dtype=torch.float64)).requires_grad_()

    def poses(u, g, b):
        return inverted_attention_routing(u, 3, lambda p: torch.nn.functional.layer_norm(p, (4,), g, b))[0]
    assert torch.autograd.gradcheck(poses, (u_hat, gamma, beta))
    routing = _routing_with_random_parameters(rng, 4, 3, 4)
    assert torch.autograd.gradcheck(lambda u: routing(u, 2), (u_hat,))


@pytest.mark.parametrize("iterations", [1, 2, 3, 4])
def test_the_fast_path_gives_the_readable_ones_poses_couplings_and_gradients(rng, iterations):
    gamma = (1 + 0.1 * torch.randn(6, generator=rng, dtype=torch.float64)).requires_grad_()
    beta = (0.1 * torch.randn(6, generator=rng, dtype=torch.float64)).requires_grad_()
    u_hat = torch.randn(3, 7, 4, 6, generator=rng, dtype=torch.float64, requires_grad=True)
    strided = torch.randn(3, 4, 7, 6, generator=rng, dtype=torch.float64).transpose(1, 2).requires_grad_()

    def normalize(p):
        return torch.nn.functional.layer_norm(p, (6,), gamma, beta)
    for votes in (u_hat, strided):                      # contiguous, and a view with the children not in front
        readable = inverted_attention_routing(votes, iterations, normalize)
        fast = inverted_attention_routing_fast(votes, iterations, normalize)
        torch.testing.assert_close(fast[0], readable[0])
        torch.testing.assert_close(fast[1], readable[1])
        weight = torch.randn(readable[0].shape, generator=rng, dtype=torch.float64)
        inputs = (votes, gamma, beta)
        grads = [torch.autograd.grad((weight * poses).sum(), inputs) for poses, _ in (readable, fast)]
        for g_readable, g_fast in zip(*grads):
            torch.testing.assert_close(g_fast, g_readable)


def test_the_routing_module_routes_with_the_fast_path(rng, monkeypatch):
    calls = []

    def recording(*args):
        calls.append(args[1])
        return inverted_attention_routing_fast(*args)
    monkeypatch.setattr(inverted_module, "inverted_attention_routing_fast", recording)
    u_hat = torch.randn(2, 5, 3, 4, generator=rng, dtype=torch.float64)
    routing = _routing_with_random_parameters(rng, 5, 3, 4)
    routing(u_hat, 3)
    assert calls == [3]


def test_a_half_precision_input_is_routed_in_float32(rng):
    u_hat = torch.randn(2, 5, 3, 4, generator=rng)
    routing = InvertedAttentionRouting(5, 3, 4)
    v = routing(u_hat.bfloat16(), 2)
    assert v.dtype == torch.float32
    torch.testing.assert_close(v, routing(u_hat.bfloat16().float(), 2))
