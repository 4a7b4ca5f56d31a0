"""EM routing (Hinton, Sabour & Frosst, 2018): hand-computed M- and E-steps, and Procedure 1 as a literal loop."""
import math

import pytest
import torch

from capsedu.routings import EMRouting, e_step, em_routing, inverse_temperature, m_step, matrix_votes
from capsedu.routings.em import EMResult, em_routing_fast

F64 = torch.float64


def t(x):
    return torch.tensor(x, dtype=F64)


def test_the_inverse_temperature_grows_towards_final_lambda():
    assert inverse_temperature(1, 0.01) == pytest.approx(0.01 * 0.05)
    assert inverse_temperature(2, 0.01) == pytest.approx(0.01 * (1 - 0.95 ** 2))
    lambdas = [inverse_temperature(k, 2.0) for k in range(1, 60)]
    assert all(a < b for a, b in zip(lambdas, lambdas[1:])) and 1.9 < lambdas[-1] < 2.0


def test_m_step_of_two_present_children_on_one_parent():
    # votes 1 and 3: mean 2, variance 1 (log sigma = 0), so cost = beta_u * 2
    # and a = logistic(lambda (beta_a - 2 beta_u))
    votes = t([[[[1.0]], [[3.0]]]])                          # (batch 1, n_in 2, n_out 1, h 1)
    a, mean, var = m_step(t([[[1.0], [1.0]]]), votes, t([[1.0, 1.0]]), t([0.5]), t([2.0]), 1.0)
    torch.testing.assert_close(mean, t([[[2.0]]]))
    torch.testing.assert_close(var, t([[[1.0]]]), rtol=1e-8, atol=0)
    torch.testing.assert_close(a, t([[1 / (1 + math.exp(-1.0))]]))


def test_m_step_weighs_children_by_assignment_times_activation():
    # R a = (0.5 * 1, 1 * 0.5, 0.25 * 0) = (0.5, 0.5, 0): the absent third child (vote 100) counts for nothing
    votes = t([[[[0.0, 2.0]], [[4.0, 2.0]], [[100.0, 100.0]]]])  # (1, 3, 1, 2)
    a, mean, var = m_step(t([[[0.5], [1.0], [0.25]]]), votes, t([[1.0, 0.5, 0.0]]), t([0.0]), t([0.0]), 3.0)
    torch.testing.assert_close(mean, t([[[2.0, 2.0]]]))
    # variances 4 and 0 (+1e-9): cost = (log 2 + log sqrt(1e-9)) * 1, a = logistic(-3 cost)
    torch.testing.assert_close(var, t([[[4.0 + 1e-9, 1e-9]]]))
    cost = math.log(2.0) + 0.5 * math.log(1e-9)
    torch.testing.assert_close(a, t([[1 / (1 + math.exp(3 * cost))]]))


def test_e_step_assigns_a_vote_to_the_parents_by_activation_times_density():
    # one child voting 0; parents at means 0 and 1 with unit variance: p = N(0; 0, 1) and N(0; 1, 1)
    votes = t([[[[0.0], [0.0]]]])                            # (1, 1, 2, 1)
    mean, var = t([[[0.0], [1.0]]]), t([[[1.0], [1.0]]])
    r = e_step(votes, t([[0.5, 0.5]]), mean, var)
    torch.testing.assert_close(r, t([[[1 / (1 + math.exp(-0.5)), math.exp(-0.5) / (1 + math.exp(-0.5))]]]))
    # an inactive parent gets nothing, however well it explains the vote
    r = e_step(votes, t([[0.0, 0.3]]), mean, var)
    torch.testing.assert_close(r, t([[[0.0, 1.0]]]))
    # a wider parent explains a far vote better: vote 3, both means 0, variances 1 and 9
    r = e_step(t([[[[3.0], [3.0]]]]), t([[1.0, 1.0]]), t([[[0.0], [0.0]]]), t([[[1.0], [9.0]]]))
    p = [math.exp(-4.5), math.exp(-0.5) / 3]
    torch.testing.assert_close(r, t([[[p[0] / sum(p), p[1] / sum(p)]]]))


def literal_em_routing(votes, a_in, beta_u, beta_a, iterations, final_lambda):
    """Procedure 1 of Hinton et al. (2018) with loops over examples, children, parents and pose entries."""
    batch, n_in, n_out, H = votes.shape
    V = votes.tolist()
    mus, acts, Rs = [], [], []
    for n in range(batch):
        R = [[1.0 / n_out] * n_out for _ in range(n_in)]
        for it in range(1, iterations + 1):
            lam = final_lambda * (1 - 0.95 ** it)
            mu, var, a = [], [], []
            for j in range(n_out):                                   # M-step
                r = [R[i][j] * float(a_in[n, i]) for i in range(n_in)]
                mass = sum(r)
                mu_j = [sum(r[i] * V[n][i][j][h] for i in range(n_in)) / mass for h in range(H)]
                var_j = [sum(r[i] * (V[n][i][j][h] - mu_j[h]) ** 2 for i in range(n_in)) / mass + 1e-9
                         for h in range(H)]
                cost = sum((float(beta_u[j]) + math.log(math.sqrt(var_j[h]))) * mass for h in range(H))
                a.append(1 / (1 + math.exp(-lam * (float(beta_a[j]) - cost))))
                mu.append(mu_j)
                var.append(var_j)
            if it == iterations:
                break
            for i in range(n_in):                                    # E-step
                p = [math.prod(math.exp(-(V[n][i][j][h] - mu[j][h]) ** 2 / (2 * var[j][h]))
                               / math.sqrt(2 * math.pi * var[j][h]) for h in range(H)) for j in range(n_out)]
                z = sum(a[k] * p[k] for k in range(n_out))
                R[i] = [a[j] * p[j] / z for j in range(n_out)]
        mus.append(mu)
        acts.append(a)
        Rs.append(R)
    return t(mus), t(acts), t(Rs)


@pytest.mark.parametrize("iterations", [1, 2, 3])
def test_em_routing_matches_a_literal_loop_over_procedure_1(rng, iterations):
    votes = torch.randn(2, 6, 3, 4, generator=rng, dtype=F64)
    a_in = torch.rand(2, 6, generator=rng, dtype=F64)
    beta_u, beta_a = torch.randn(3, generator=rng, dtype=F64), torch.randn(3, generator=rng, dtype=F64)
    result = em_routing(votes, a_in, beta_u, beta_a, iterations, final_lambda=1.0)
    mu, a, R = literal_em_routing(votes, a_in, beta_u, beta_a, iterations, 1.0)
    torch.testing.assert_close(result.poses, mu)
    torch.testing.assert_close(result.activations, a)
    torch.testing.assert_close(result.assignments, R)


def test_em_routing_gradients_match_finite_differences(rng):
    votes = torch.randn(2, 4, 3, 2, generator=rng, dtype=F64, requires_grad=True)
    a_in = torch.rand(2, 4, generator=rng, dtype=F64).requires_grad_()
    beta_u = torch.randn(3, generator=rng, dtype=F64, requires_grad=True)
    beta_a = torch.randn(3, generator=rng, dtype=F64, requires_grad=True)

    def outputs(v, a, bu, ba):
        result = em_routing(v, a, bu, ba, 3, final_lambda=1.0)
        return result.poses, result.activations
    assert torch.autograd.gradcheck(outputs, (votes, a_in, beta_u, beta_a))


@pytest.mark.parametrize("iterations", [1, 2, 3, 4])
def test_the_fast_em_routing_gives_the_readable_ones_values_and_gradients(rng, iterations):
    votes = torch.randn(3, 7, 4, 5, generator=rng, dtype=F64, requires_grad=True)
    a_in = torch.rand(3, 7, generator=rng, dtype=F64)
    a_in[0, :3] = 0.0                                               # absent children
    a_in[1] = 0.0                                                   # an example with no present child at all
    a_in.requires_grad_()
    beta_u = torch.randn(4, generator=rng, dtype=F64, requires_grad=True)
    beta_a = torch.randn(4, generator=rng, dtype=F64, requires_grad=True)
    inputs = (votes, a_in, beta_u, beta_a)
    readable = em_routing(*inputs, iterations, final_lambda=0.5)
    fast = em_routing_fast(*inputs, iterations, final_lambda=0.5)
    for name in EMResult._fields:
        torch.testing.assert_close(getattr(fast, name), getattr(readable, name), msg=name)
    weights = [torch.randn(x.shape, generator=rng, dtype=F64) for x in readable]
    grads = [torch.autograd.grad(sum((w * x).sum() for w, x in zip(weights, result)), inputs)
             for result in (readable, fast)]
    for g_readable, g_fast in zip(*grads):
        torch.testing.assert_close(g_fast, g_readable)


def test_the_routing_module_routes_with_the_fast_path(rng):
    u_hat = torch.randn(2, 6, 3, 16, generator=rng, dtype=F64)
    a_in = torch.rand(2, 6, generator=rng, dtype=F64)
    routing = EMRouting(6, 3, 16, final_lambda=0.01).double()
    with torch.no_grad():
        routing.beta_u.normal_(generator=rng), routing.beta_a.normal_(generator=rng)
    v, couplings = routing(u_hat, 3, a_in, return_couplings=True)
    expected = em_routing(u_hat, a_in, routing.beta_u, routing.beta_a, 3, 0.01)
    torch.testing.assert_close(v.norm(dim=-1), expected.activations)
    torch.testing.assert_close(couplings, expected.assignments)


def test_the_routing_module_has_the_activation_as_length_and_the_mean_as_direction(rng):
    votes = torch.randn(2, 5, 3, 16, generator=rng, dtype=F64)
    a_in = torch.rand(2, 5, generator=rng, dtype=F64)
    routing = EMRouting(5, 3, 16).double()
    v = routing(votes, 3, a_in)
    result = em_routing(votes, a_in, routing.beta_u, routing.beta_a, 3)
    torch.testing.assert_close(v.norm(dim=-1), result.activations)
    torch.testing.assert_close(v / v.norm(dim=-1, keepdim=True),
                               result.poses / result.poses.norm(dim=-1, keepdim=True))
    # without activations every child counts as present
    torch.testing.assert_close(routing(votes, 3), routing(votes, 3, torch.ones(2, 5, dtype=F64)))


def test_agreeing_present_children_activate_their_parent_more_than_scattered_ones(rng):
    # parent 0 receives four nearly equal votes, parent 1 four scattered ones
    votes = torch.empty(1, 4, 2, 16, dtype=F64)
    votes[0, :, 0] = torch.randn(16, generator=rng, dtype=F64) + 0.01 * torch.randn(4, 16, generator=rng, dtype=F64)
    votes[0, :, 1] = 3 * torch.randn(4, 16, generator=rng, dtype=F64)
    result = em_routing(votes, torch.ones(1, 4, dtype=F64), torch.zeros(2, dtype=F64), torch.zeros(2, dtype=F64), 3)
    # parent 0's small variance gives it a negative cost; the scattered votes end up assigned to parent 0 as well,
    # so parent 1 explains (almost) nothing, costs (almost) nothing and stays near logistic(0) = 0.5
    assert result.activations[0, 0] > 0.5
    assert result.activations[0, 0] - result.activations[0, 1] > 0.01


def test_matrix_votes_multiply_each_pose_by_each_transformation(rng):
    poses = torch.randn(2, 3, 4, 4, generator=rng, dtype=F64)
    weights = torch.randn(3, 5, 4, 4, generator=rng, dtype=F64)
    votes = matrix_votes(poses, weights)
    assert votes.shape == (2, 3, 5, 16)
    torch.testing.assert_close(votes[1, 2, 4].view(4, 4), poses[1, 2] @ weights[2, 4])
    with pytest.raises(ValueError, match=r"poses must be \(batch, n_in, 4, 4\)"):
        matrix_votes(poses, weights[:2])


@pytest.mark.parametrize("final_lambda", [0, -1.0, float("nan"), True, "0.01"])
def test_a_bad_final_lambda_is_rejected(final_lambda):
    with pytest.raises(ValueError, match="final_lambda must be a positive number"):
        EMRouting(4, 3, 16, final_lambda=final_lambda)
