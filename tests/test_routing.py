import math

import pytest
import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from capsedu import dynamic_routing, routing_trace


def literal_routing(u_hat, iterations):
    """Procedure 1 with explicit loops over examples and capsules (float64)."""
    batch, n_in, n_out, _ = u_hat.shape
    vs, cs = [], []
    for n in range(batch):
        b = [[0.0] * n_out for _ in range(n_in)]
        for _ in range(iterations):
            c = []
            for i in range(n_in):
                z = sum(math.exp(b[i][k]) for k in range(n_out))
                c.append([math.exp(b[i][j]) / z for j in range(n_out)])        # Eq. 3
            v = []
            for j in range(n_out):
                s = sum(c[i][j] * u_hat[n, i, j] for i in range(n_in))          # Eq. 2
                norm2 = float((s * s).sum())
                v.append(s * (norm2 / (1 + norm2) / math.sqrt(norm2)))         # Eq. 1
            for i in range(n_in):
                for j in range(n_out):
                    b[i][j] += float((u_hat[n, i, j] * v[j]).sum())            # line 7
        vs.append(torch.stack(v))
        cs.append(torch.tensor(c, dtype=u_hat.dtype))
    return torch.stack(vs), torch.stack(cs)


@pytest.mark.parametrize("iterations", [1, 2, 3, 5])
def test_routing_matches_a_literal_loop_over_capsules(rng, iterations):
    u_hat = torch.randn(3, 7, 4, 5, generator=rng, dtype=torch.float64)
    v, c = dynamic_routing(u_hat, iterations, return_couplings=True)
    v_ref, c_ref = literal_routing(u_hat, iterations)
    torch.testing.assert_close(v, v_ref)
    torch.testing.assert_close(c, c_ref)


def test_couplings_are_a_softmax_over_output_capsules(rng):
    u_hat = torch.randn(4, 20, 6, 8, generator=rng)
    _, c = dynamic_routing(u_hat, 4, return_couplings=True)
    assert c.shape == (4, 20, 6)
    assert (c > 0).all()
    torch.testing.assert_close(c.sum(dim=-1), torch.ones(4, 20))


def test_one_iteration_means_uniform_couplings(rng):
    u_hat = torch.randn(2, 9, 5, 3, generator=rng)
    v, c = dynamic_routing(u_hat, 1, return_couplings=True)
    torch.testing.assert_close(c, torch.full_like(c, 1 / 5))
    from capsedu import squash
    torch.testing.assert_close(v, squash(u_hat.sum(dim=1) / 5))  # s_j = sum_i u_hat_{j|i} / n_out


def test_routing_of_each_example_is_independent_of_the_rest_of_the_batch(rng):
    u_hat = torch.randn(5, 12, 4, 6, generator=rng)
    v_batch, c_batch = dynamic_routing(u_hat, 3, return_couplings=True)
    for n in range(5):
        v_one, c_one = dynamic_routing(u_hat[n:n + 1], 3, return_couplings=True)
        torch.testing.assert_close(v_batch[n:n + 1], v_one)
        torch.testing.assert_close(c_batch[n:n + 1], c_one)
    # replacing the other examples changes nothing for example 0
    other = u_hat.clone()
    other[1:] = torch.randn(4, 12, 4, 6, generator=rng) * 10
    torch.testing.assert_close(dynamic_routing(other, 3)[0], v_batch[0])


def test_agreeing_votes_gain_coupling_and_outliers_lose_it():
    # three children vote (almost) the same 2-D pose for parent 0; two outliers vote at random
    torch.manual_seed(0)
    u_hat = torch.zeros(1, 5, 2, 2)
    u_hat[0, :3, 0] = torch.tensor([2.0, 1.0]) + 0.05 * torch.randn(3, 2)
    u_hat[0, 3:, 0] = torch.tensor([[-2.0, 1.5], [-1.5, -2.0]])
    u_hat[0, :, 1] = 0.3 * torch.randn(5, 2)
    trace = routing_trace(u_hat, 5)
    c_first, c_last = trace.couplings[0][0, :, 0], trace.couplings[-1][0, :, 0]
    assert (c_last[:3] > c_first[:3] + 0.1).all()
    assert (c_last[3:] < c_first[3:]).all()
    assert trace.outputs[-1][0, 0].norm() > trace.outputs[0][0, 0].norm()


@pytest.mark.parametrize("bad", [0, -1, 2.0, True, "3"])
def test_iterations_below_one_or_not_an_integer_are_rejected(bad):
    with pytest.raises(ValueError, match="iterations"):
        dynamic_routing(torch.randn(1, 2, 3, 4), bad)


@pytest.mark.parametrize("shape", [(2, 3, 4), (2, 3, 4, 5, 6), (0, 3, 4, 5)])
def test_wrong_u_hat_shape_is_rejected_with_the_shape_in_the_message(shape):
    with pytest.raises(ValueError, match="shape"):
        dynamic_routing(torch.randn(*shape), 3)


def test_unknown_gradient_mode_is_rejected():
    with pytest.raises(ValueError, match="gradient"):
        dynamic_routing(torch.randn(1, 2, 3, 4), 3, gradient="none")


def test_gradient_modes_agree_forward_and_differ_backward(rng):
    u0 = torch.randn(2, 10, 3, 4, generator=rng, dtype=torch.float64)
    grads = {}
    for mode in ("all", "last"):
        u = u0.clone().requires_grad_(True)
        v = dynamic_routing(u, 3, gradient=mode)
        (v * torch.arange(4, dtype=torch.float64)).sum().backward()
        grads[mode] = (v.detach(), u.grad)
    torch.testing.assert_close(grads["all"][0], grads["last"][0])
    assert not torch.allclose(grads["all"][1], grads["last"][1])


def test_last_iteration_gradient_treats_couplings_as_constants(rng):
    u = torch.randn(2, 6, 3, 4, generator=rng, dtype=torch.float64, requires_grad=True)
    _, c = dynamic_routing(u.detach(), 3, return_couplings=True)
    from capsedu import squash
    target = squash(torch.einsum("bij,bijd->bjd", c, u))  # Eqs. 2 and 1 with fixed c
    g_ref, = torch.autograd.grad(target.sum(), u)
    g, = torch.autograd.grad(dynamic_routing(u, 3, gradient="last").sum(), u)
    torch.testing.assert_close(g, g_ref)


def test_gradients_through_all_iterations_match_finite_differences():
    u = torch.randn(2, 4, 3, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: dynamic_routing(x, 3), (u,))


def test_trace_records_every_iteration_and_matches_the_routing_result(rng):
    u_hat = torch.randn(3, 8, 4, 5, generator=rng)
    v, c = dynamic_routing(u_hat, 4, return_couplings=True)
    trace = routing_trace(u_hat, 4)
    assert trace.iterations == 4
    assert len(trace.logits) == 5 and len(trace.couplings) == 4 and len(trace.outputs) == 4
    assert torch.equal(trace.logits[0], torch.zeros(3, 8, 4))
    torch.testing.assert_close(trace.outputs[-1], v)
    torch.testing.assert_close(trace.couplings[-1], c)
    # each logit update is the agreement of the prediction with that iteration's output
    for k in range(4):
        agreement = torch.einsum("bijd,bjd->bij", u_hat, trace.outputs[k])
        torch.testing.assert_close(trace.logits[k + 1] - trace.logits[k], agreement)
    changes = trace.logit_changes()
    assert changes.shape == (4,) and (changes > 0).all()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_input_is_routed_in_float32(rng, dtype):
    u_hat = torch.randn(2, 6, 3, 4, generator=rng)
    v, c = dynamic_routing(u_hat.to(dtype), 3, return_couplings=True)
    assert v.dtype == torch.float32 and c.dtype == torch.float32
    torch.testing.assert_close(v, dynamic_routing(u_hat.to(dtype).float(), 3))


@pytest.mark.parametrize("n_out", [4, 40])  # the fast path and the autograd loop
def test_float64_input_is_routed_and_returned_in_float64(rng, n_out):
    u_hat = torch.randn(2, 6, n_out, 4, generator=rng, dtype=torch.float64, requires_grad=True)
    v, c = dynamic_routing(u_hat, 3, return_couplings=True)
    assert v.dtype == torch.float64 and c.dtype == torch.float64
    v.sum().backward()
    assert u_hat.grad.dtype == torch.float64


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool])
def test_integer_predictions_are_rejected_naming_u_hat(dtype):
    with pytest.raises(ValueError, match=rf"u_hat must be a floating-point tensor, got dtype {dtype}"):
        dynamic_routing(torch.ones(1, 2, 3, 4, dtype=dtype), 3)


def test_an_empty_batch_is_rejected_naming_u_hat():
    with pytest.raises(ValueError, match=r"u_hat: empty batch \(shape \(0, 5, 3, 4\)\)"):
        dynamic_routing(torch.zeros(0, 5, 3, 4), 3)


@pytest.mark.parametrize("gradient", ["all", "last"])
@pytest.mark.parametrize("n_out", [4, 40])
def test_predictions_too_long_to_square_in_float32_route_to_finite_outputs_and_gradients(rng, gradient, n_out):
    u_hat = (torch.randn(2, 6, n_out, 4, generator=rng) * 1e20).requires_grad_(True)
    v = dynamic_routing(u_hat, 3, gradient=gradient)
    assert torch.isfinite(v).all() and (v.norm(dim=-1) <= 1 + 1e-6).all()
    v.sum().backward()
    assert torch.isfinite(u_hat.grad).all()
    uniform = dynamic_routing(u_hat, 1)  # s_j = mean_i u_hat_{j|i}, ~1e20 long: v_j has unit length
    torch.testing.assert_close(uniform.norm(dim=-1), torch.ones(2, n_out))


class LiveStoragePeak(TorchDispatchMode):
    """Peak bytes of the tensor storages created inside the mode and still alive, op by op."""

    def __init__(self):
        super().__init__()
        self.live, self.peak = {}, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.live = {ptr: (ref, n) for ptr, (ref, n) in self.live.items() if not ref.expired()}
        if not any(r.alias_info is not None for r in func._schema.returns):  # views share a storage
            for t in tree_leaves(out):
                if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in self.live:
                    storage = t.untyped_storage()
                    self.live[storage.data_ptr()] = (StorageWeakRef(storage), storage.nbytes())
        self.peak = max(self.peak, sum(n for _, n in self.live.values()))
        return out


def routing_peak_bytes(u_hat, iterations, context):
    with context(), LiveStoragePeak() as tracker:
        dynamic_routing(u_hat, iterations, return_couplings=True)
    return tracker.peak


@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode])
@pytest.mark.parametrize("n_out", [4, 40])  # the fast path and the autograd loop
def test_routing_without_gradients_keeps_one_iteration_alive_whatever_the_iteration_count(context, n_out):
    u_hat = torch.randn(8, 30, n_out, 4, generator=torch.Generator().manual_seed(0), requires_grad=True)
    coupling_bytes = 8 * 30 * n_out * 4  # one iteration's c, the largest per-iteration tensor
    few, many = routing_peak_bytes(u_hat, 3, context), routing_peak_bytes(u_hat, 30, context)
    assert few > coupling_bytes  # the tracker sees the routing's tensors
    assert many - few < coupling_bytes  # 27 more iterations, not one more coupling tensor


@pytest.mark.parametrize("gradient, grows", [("last", False), ("all", True)])
def test_only_the_full_gradient_saves_every_iteration_for_backward(gradient, grows):
    u_hat = torch.randn(2, 6, 3, 4, generator=torch.Generator().manual_seed(0), requires_grad=True)

    def saved(iterations):
        packed = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: packed.append(t) or t, lambda t: t):
            dynamic_routing(u_hat, iterations, gradient=gradient)
        return len(packed)

    assert (saved(12) > saved(3)) is grows


def test_setting_digitcaps_routing_gradient_after_construction_changes_the_gradients():
    from capsedu.layers import DigitCaps
    torch.manual_seed(0)
    layer = DigitCaps(n_in=12, in_dim=4, n_out=3, out_dim=5)
    u = torch.randn(2, 12, 4)

    def grad_of_weight():
        layer.zero_grad()
        layer(u).pow(2).sum().backward()
        return layer.weight.grad.clone()

    full = grad_of_weight()
    layer.routing_gradient = "last"
    assert layer.routing.gradient == "last" and layer.routing_gradient == "last"
    assert not torch.allclose(grad_of_weight(), full)
    layer.routing_gradient = "all"
    assert torch.allclose(grad_of_weight(), full)


def test_digitcaps_refuses_a_gradient_mode_for_routings_that_have_none():
    from capsedu.layers import DigitCaps
    layer = DigitCaps(n_in=12, in_dim=4, n_out=3, out_dim=5, routing="uniform")
    with pytest.raises(ValueError, match="dynamic routing only"):
        layer.routing_gradient = "last"
