"""Self-attention routing (Mazzia et al., 2021) against a literal loop that builds the attention matrices."""
import math

import pytest
import torch

from capsedu.routings import SelfAttentionRouting, self_attention_routing, squash_efficient


def literal_self_attention(u_hat, prior):
    """One pass over explicit n_in x n_in self-attention matrices A_j, example by example (float64)."""
    batch, n_in, n_out, d = u_hat.shape
    vs, cs = [], []
    for n in range(batch):
        A = [[[float(u_hat[n, i, j] @ u_hat[n, k, j]) / math.sqrt(d) for k in range(n_in)] for i in range(n_in)]
             for j in range(n_out)]
        c = []
        for i in range(n_in):
            scores = [sum(A[j][i]) for j in range(n_out)]
            z = sum(math.exp(x) for x in scores)
            c.append([math.exp(x) / z for x in scores])
        v = []
        for j in range(n_out):
            s = sum((c[i][j] + float(prior[j, i])) * u_hat[n, i, j] for i in range(n_in))
            norm = math.sqrt(float(s @ s))
            v.append((1 - math.exp(-norm)) * s / norm)
        vs.append(torch.stack(v))
        cs.append(torch.tensor(c, dtype=u_hat.dtype))
    return torch.stack(vs), torch.stack(cs)


def test_self_attention_routing_matches_a_literal_loop_over_attention_matrices(rng):
    u_hat = torch.randn(3, 5, 4, 6, generator=rng, dtype=torch.float64)
    routing = SelfAttentionRouting(5, 4, 6).double()
    with torch.no_grad():
        routing.prior.copy_(0.3 * torch.randn(4, 5, generator=rng, dtype=torch.float64))
    v, c = routing(u_hat, return_couplings=True)
    v_ref, c_ref = literal_self_attention(u_hat, routing.prior.detach())
    torch.testing.assert_close(v, v_ref)
    torch.testing.assert_close(c, c_ref)


def test_self_attention_routing_is_one_pass_whatever_the_iteration_count(rng):
    u_hat = torch.randn(2, 6, 3, 4, generator=rng)
    routing = SelfAttentionRouting(6, 3, 4)
    torch.testing.assert_close(routing(u_hat, 1), routing(u_hat, 7), rtol=0, atol=0)


def test_self_attention_routing_has_gradients_for_predictions_and_prior(rng):
    u_hat = torch.randn(2, 4, 3, 3, generator=rng, dtype=torch.float64, requires_grad=True)
    prior = (0.1 * torch.randn(3, 4, generator=rng, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(lambda u, b: self_attention_routing(u, b)[0], (u_hat, prior))


def test_efficient_squash_has_the_papers_lengths_and_a_finite_gradient_at_zero():
    s = torch.tensor([[3.0, 0.0], [0.0, 0.0], [1e-6, 0.0], [40.0, 30.0]], dtype=torch.float64, requires_grad=True)
    v = squash_efficient(s)
    lengths = v.norm(dim=-1)
    torch.testing.assert_close(lengths[0], torch.tensor(1 - math.exp(-3.0), dtype=torch.float64))
    assert lengths[1] == 0
    torch.testing.assert_close(v[2], s[2].detach(), rtol=1e-5, atol=0)  # steep at the origin: v ~ s
    torch.testing.assert_close(v[3], torch.tensor([0.8, 0.6], dtype=torch.float64))  # ~unit length at |s| = 50
    v.sum().backward()
    assert torch.isfinite(s.grad).all()


def test_a_prior_can_shift_weight_to_one_parent(rng):
    # the prior is added to the couplings: a large prior on parent 0 makes s_0 the sum of all predictions
    u_hat = torch.randn(1, 5, 2, 3, generator=rng, dtype=torch.float64)
    routing = SelfAttentionRouting(5, 2, 3).double()
    with torch.no_grad():
        routing.prior[0] = 1e6
    v = routing(u_hat)
    total = u_hat[0, :, 0].sum(dim=0)
    torch.testing.assert_close(v[0, 0], squash_efficient(total * 1e6), rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("bad", [torch.zeros(2, 5, 3), torch.zeros(2, 4, 3, 4)])
def test_self_attention_routing_rejects_predictions_of_other_sizes(bad):
    with pytest.raises(ValueError, match="u_hat must have shape"):
        SelfAttentionRouting(5, 3, 4)(bad)
