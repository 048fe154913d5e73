"""gather_add_act: Triton (interpreter on CPU) against the torch reference, gradcheck, argument errors."""
import pytest
import torch

from gmnfx.kernels import gather_add_act, gather_add_act_reference, segments_of
from gmnfx.kernels.gather_add_act import BLOCK_E
from gmnfx.kernels.segment_reduce import MAX_BLOCK_H
from kernel_checks import DTYPE_PARAMS, check_against_reference, random_edges, triton_gradients

ACTIVATIONS = ["identity", "relu", "silu"]
# name: (nodes N, edges E, hidden H)
CASES = {
    "one_edge": (2, 1, 5),
    "no_edges": (3, 0, 5),
    "empty_graph": (0, 0, 4),
    "isolated_nodes": (12, 5, 33),
    "over_a_block": (4, BLOCK_E + 3, MAX_BLOCK_H + 1),
}


def edge_problem(num_nodes, num_edges, H, device):
    src, dst = random_edges(num_nodes, num_edges, device=device)
    inputs = {"a": torch.randn(num_nodes, H, device=device), "b": torch.randn(num_nodes, H, device=device),
              "c": torch.randn(num_edges, H, device=device)}
    return src, dst, inputs


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("dtype, atol, rtol", DTYPE_PARAMS)
@pytest.mark.parametrize("case", CASES)
def test_triton_matches_reference(triton_backend, device, case, dtype, atol, rtol, activation):
    src, dst, inputs = edge_problem(*CASES[case], device)
    check_against_reference(
        lambda a, b, c: gather_add_act(a, src, b, dst, c, activation),
        lambda a, b, c: gather_add_act_reference(a, src, b, dst, c, activation),
        inputs, dtype, atol, rtol,
    )


@pytest.mark.parametrize("present", ["a", "a_b", "a_c"])
def test_triton_matches_reference_with_optional_inputs_left_out(triton_backend, device, present):
    src, dst, inputs = edge_problem(6, 40, 7, device)
    inputs = {k: v for k, v in inputs.items() if k in present.split("_")}

    def call(op, a, b=None, c=None):
        return op(a, src, b, dst if b is not None else None, c, "silu")

    check_against_reference(lambda **x: call(gather_add_act, **x), lambda **x: call(gather_add_act_reference, **x),
                            inputs, torch.float32, 1e-5, 1e-5)


def test_triton_matches_reference_with_given_groups(triton_backend, device):
    src, dst, inputs = edge_problem(6, 40, 7, device)
    groups_a, groups_b = segments_of(src, 6), segments_of(dst, 6)
    check_against_reference(
        lambda a, b, c: gather_add_act(a, src, b, dst, c, "relu", groups_a=groups_a, groups_b=groups_b),
        lambda a, b, c: gather_add_act_reference(a, src, b, dst, c, "relu"),
        inputs, torch.float32, 1e-5, 1e-5,
    )


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_relu_gradient_at_zero_is_zero(request, device, backend):
    request.getfixturevalue(f"{backend}_backend")
    a = torch.tensor([[1.0, -2.0]], device=device, requires_grad=True)
    c = torch.tensor([[-1.0, 2.0]], device=device, requires_grad=True)  # a + c == 0
    gather_add_act(a, torch.tensor([0], device=device), c=c, activation="relu").sum().backward()
    assert a.grad.eq(0).all() and c.grad.eq(0).all()


def test_triton_accepts_strided_features_and_int32_strided_indices(triton_backend, device):
    src, dst, inputs = edge_problem(6, 40, 7, device)
    edge_index = torch.stack([src, dst], 1).int()  # columns are strided int32 views
    inputs = {"a": inputs["a"].t().contiguous().t(), "b": inputs["b"], "c": inputs["c"].t().contiguous().t()}
    check_against_reference(
        lambda a, b, c: gather_add_act(a, edge_index[:, 0], b, edge_index[:, 1], c, "silu"),
        lambda a, b, c: gather_add_act_reference(a, src, b, dst, c, "silu"),
        inputs, torch.float32, 1e-5, 1e-5,
    )


def test_triton_gradients_are_deterministic(triton_backend, device):
    src, dst, inputs = edge_problem(5, 80, 33, device)
    op = lambda a, b, c: gather_add_act(a, src, b, dst, c, "silu")  # noqa: E731
    first, second = triton_gradients(op, inputs), triton_gradients(op, inputs)
    for k in inputs:
        assert torch.equal(first[k], second[k]), k


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_torch_path_passes_gradcheck(torch_backend, activation):
    src, dst, inputs = edge_problem(4, 9, 3, "cpu")
    a, b, c = (x.double().requires_grad_() for x in inputs.values())
    assert torch.autograd.gradcheck(lambda a, b, c: gather_add_act(a, src, b, dst, c, activation), (a, b, c))


def test_torch_path_computes_the_edge_update(torch_backend):
    a, b = torch.tensor([[1.0], [-3.0]]), torch.tensor([[10.0], [20.0]])
    c = torch.tensor([[0.5], [-9.0], [0.0]])
    out = gather_add_act(a, torch.tensor([0, 1, 1]), b, torch.tensor([1, 0, 1]), c, "relu")
    assert out.tolist() == [[21.5], [0.0], [17.0]]


GOOD = {"a": torch.zeros(3, 4), "index_a": torch.tensor([0, 2]), "b": torch.zeros(2, 4),
        "index_b": torch.tensor([1, 1]), "c": torch.zeros(2, 4)}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"index_b": None}, r"expected b and index_b both given or both None"),
        ({"c": torch.zeros(3, 4)}, r"expected c to have 2 rows \(got shape \(3, 4\)\)"),
        ({"b": torch.zeros(2, 5)}, r"expected b to have 4 columns \(got shape \(2, 5\)\)"),
        ({"c": torch.zeros(2, 4, dtype=torch.half)}, r"expected c to have dtype torch.float32 \(got torch.float16\)"),
        ({"activation": "gelu"}, r"expected activation to be one of 'identity', 'relu', 'silu' \(got 'gelu'\)"),
        ({"groups_a": segments_of(torch.tensor([0, 1]), 2)}, r"expected groups_a.rowptr to have 4 entries"),
        ({"index_a": torch.tensor([0, 3])}, r"expected index_a values in \[0, 3\) \(got values in \[0, 3\]\)"),
    ],
)
def test_invalid_arguments_are_rejected_with_clear_errors(monkeypatch, change, message):
    monkeypatch.setenv("GMNFX_DEBUG", "1")
    with pytest.raises(ValueError, match=message):
        gather_add_act(**{**GOOD, **change})
