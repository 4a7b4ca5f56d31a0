"""What every routing procedure of capsedu.routings promises, and DigitCaps/CapsNet built with each of them."""
import json
import sys
from pathlib import Path

import pytest
import torch

from capsedu import CapsNet, CapsNetConfig, DigitCaps, capsule_length, count_parameters, dynamic_routing
from capsedu.routings import ROUTINGS, build_routing

NAMES = sorted(ROUTINGS)


def _routing(name, n_in, n_out, dim, rng, dtype=torch.float32):
    """A routing module whose parameters (if any) are random, so that they take part in every check."""
    routing = build_routing(name, n_in, n_out, dim).to(dtype)
    with torch.no_grad():
        for parameter in routing.parameters():
            parameter.copy_(0.5 * torch.randn(parameter.shape, generator=rng, dtype=dtype))
    return routing


@pytest.mark.parametrize("name", NAMES)
def test_each_example_is_routed_independently_of_the_rest_of_the_batch(rng, name):
    routing = _routing(name, 7, 3, 4, rng, torch.float64)
    u_hat = torch.randn(4, 7, 3, 4, generator=rng, dtype=torch.float64)
    a = torch.rand(4, 7, generator=rng, dtype=torch.float64)
    v, c = routing(u_hat, 3, a, return_couplings=True)
    for n in range(4):
        v_one, c_one = routing(u_hat[n:n + 1], 3, a[n:n + 1], return_couplings=True)
        torch.testing.assert_close(v[n:n + 1], v_one)
        torch.testing.assert_close(c[n:n + 1], c_one)


@pytest.mark.parametrize("name", NAMES)
def test_couplings_are_a_distribution_over_the_parents_and_lengths_lie_in_0_1(rng, name):
    routing = _routing(name, 9, 4, 6, rng)
    v, c = routing(torch.randn(2, 9, 4, 6, generator=rng), 3, return_couplings=True)
    assert v.shape == (2, 4, 6) and c.shape == (2, 9, 4)
    assert (c >= 0).all()
    torch.testing.assert_close(c.sum(dim=-1), torch.ones(2, 9))
    lengths = v.norm(dim=-1)
    assert (lengths >= 0).all() and (lengths < 1).all()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("scale", [1e12, 1e-20])
def test_huge_and_tiny_predictions_route_to_finite_outputs_and_gradients(rng, name, scale):
    routing = _routing(name, 6, 3, 4, rng)
    u_hat = (torch.randn(2, 6, 3, 4, generator=rng) * scale).requires_grad_()
    v = routing(u_hat, 3)
    assert torch.isfinite(v).all()
    v.sum().backward()
    assert torch.isfinite(u_hat.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in routing.parameters())


@pytest.mark.parametrize("name", NAMES)
def test_gradients_match_finite_differences(rng, name):
    routing = _routing(name, 4, 3, 3, rng, torch.float64)
    u_hat = torch.randn(2, 4, 3, 3, generator=rng, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda u: routing(u, 3), (u_hat,))


@pytest.mark.parametrize("name", NAMES)
def test_only_the_iterative_procedures_depend_on_the_iteration_count(rng, name):
    routing = _routing(name, 8, 3, 4, rng)
    u_hat = torch.randn(2, 8, 3, 4, generator=rng)
    changed = (routing(u_hat, 1) - routing(u_hat, 4)).abs().max() > 1e-4
    assert bool(changed) == routing.iterative


def _bad_calls(routing, u_hat):
    return {
        "3-D": (lambda: routing(u_hat[0]), r"u_hat must have shape \(batch, n_in, n_out, d_out\)"),
        "other sizes": (lambda: routing(u_hat[:, :2]), r"u_hat must have shape \(batch, 5, 3, 4\)"),
        "integer": (lambda: routing(u_hat.long()), "floating-point"),
        "empty batch": (lambda: routing(u_hat[:0]), "empty batch"),
        "zero iterations": (lambda: routing(u_hat, 0), "routing iterations"),
        "fractional iterations": (lambda: routing(u_hat, 2.5), "routing iterations"),
        "bool iterations": (lambda: routing(u_hat, True), "routing iterations"),
        "activations": (lambda: routing(u_hat, 3, torch.ones(2, 4)), r"activations must have shape \(2, 5\)"),
    }


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("case", list(_bad_calls(None, torch.zeros(2, 5, 3, 4))))
def test_bad_shapes_and_iteration_counts_get_a_one_line_error(name, case):
    routing = build_routing(name, 5, 3, 4)
    call, message = _bad_calls(routing, torch.zeros(2, 5, 3, 4))[case]
    with pytest.raises(ValueError, match=message) as error:
        call()
    assert "\n" not in str(error.value)


def test_unknown_routing_names_and_bad_sizes_are_rejected_with_the_choices():
    with pytest.raises(ValueError, match=r"routing must be one of \['dynamic', 'em', 'inverted-attention'"):
        build_routing("k-means", 5, 3, 4)
    with pytest.raises(ValueError, match="n_out must be a positive integer"):
        build_routing("em", 5, 0, 4)


def test_the_dynamic_and_uniform_modules_are_procedure_1_bit_for_bit(rng):
    u_hat = torch.randn(3, 10, 4, 5, generator=rng)
    for gradient in ("all", "last"):
        v, c = build_routing("dynamic", 10, 4, 5, gradient=gradient)(u_hat, 3, return_couplings=True)
        v_ref, c_ref = dynamic_routing(u_hat, 3, return_couplings=True, gradient=gradient)
        assert torch.equal(v, v_ref) and torch.equal(c, c_ref)
    assert torch.equal(build_routing("uniform", 10, 4, 5)(u_hat, 3), dynamic_routing(u_hat, 1))


def test_digitcaps_routes_by_agreement_by_default_exactly_as_before(rng):
    layer = DigitCaps(n_in=12, in_dim=8, n_out=3, out_dim=16)
    u = torch.randn(2, 12, 8, generator=rng)
    assert type(layer.routing).__name__ == "DynamicRouting" and list(layer.routing.parameters()) == []
    assert torch.equal(layer(u), dynamic_routing(layer.predictions(u), 3))
    assert list(layer.state_dict()) == ["weight"]


@pytest.mark.parametrize("name", NAMES)
def test_digitcaps_takes_each_routing_by_name_and_em_reads_the_input_lengths(rng, name):
    layer = DigitCaps(n_in=12, in_dim=8, n_out=3, out_dim=16, routing=name)
    u = torch.randn(2, 12, 8, generator=rng) * 0.3
    v, c = layer(u, return_couplings=True)
    activations = capsule_length(u) if name == "em" else None
    v_ref, c_ref = layer.routing(layer.predictions(u), 3, activations, return_couplings=True)
    torch.testing.assert_close(v, v_ref, rtol=0, atol=0)
    torch.testing.assert_close(c, c_ref, rtol=0, atol=0)
    v.sum().backward()
    assert layer.weight.grad is not None and torch.isfinite(layer.weight.grad).all()


@pytest.mark.parametrize("name", NAMES)
def test_a_capsnet_with_each_routing_differs_only_in_the_routing_parameters(rng, name):
    base = CapsNet("small", reconstruction=False)
    net = CapsNet("small", reconstruction=False, routing=name)
    assert count_parameters(net) - count_parameters(base) == count_parameters(net.digits.routing)
    out = net(torch.rand(2, 1, 28, 28, generator=rng))
    assert out.lengths.shape == (2, 10) and ((out.lengths >= 0) & (out.lengths < 1)).all()
    record = net.config.to_dict()
    assert ("routing" in record) == (name != "dynamic")  # the default is recorded as before the field existed
    assert CapsNetConfig.from_dict(record) == net.config


def test_options_of_dynamic_routing_alone_are_refused_for_the_others():
    with pytest.raises(ValueError, match="CapsNet routing must be one of"):
        CapsNetConfig(routing="Dynamic")
    with pytest.raises(ValueError, match="apply to dynamic routing only, not to routing='em'"):
        CapsNetConfig.from_preset("cifar10", routing="em")
    with pytest.raises(ValueError, match="routing_gradient='last' apply to dynamic routing only"):
        DigitCaps(12, 8, 3, 16, routing_gradient="last", routing="self-attention")


def test_the_routings_benchmark_times_every_registered_procedure_at_both_shapes(tmp_path):
    bench = Path(__file__).resolve().parents[1] / "benchmarks"
    sys.path.insert(0, str(bench))
    try:
        import bench_routings
    finally:
        sys.path.remove(str(bench))
    out = tmp_path / "routings.json"
    # the benchmark sets the thread count it is given (--quick alone means 1): give it the current one
    bench_routings.main(["--quick", "--threads", str(torch.get_num_threads()), "--note", "a test", "--out", str(out)])
    data = json.loads(out.read_text())
    assert data["quick"] is True and data["note"] == "a test" and data["machine"]["cpu_count"] > 0
    rows = {(r["shape_label"], r["method"]): r for r in data["results"]}
    for label, _ in bench_routings.SHAPES:
        assert {m for lab, m in rows if lab == label} >= set(ROUTINGS)
        assert rows[(label, "dynamic")]["time_vs_dynamic"] == 1
    assert all(r["median_s"] > 0 for r in rows.values())
    assert ("efficient-capsnet-mnist", "self-attention (explicit A)") in rows
