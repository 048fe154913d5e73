"""gather_act_reduce: Triton (interpreter on CPU) against the torch reference, gradcheck, argument errors."""
import pytest
import torch

from gmnfx.kernels import gather_act_reduce, gather_act_reduce_reference, segments_of
from gmnfx.kernels.segment_reduce import BLOCK_K, MAX_BLOCK_H
from kernel_checks import DTYPE_PARAMS, check_against_reference, random_edges, triton_gradients

ACTIVATIONS = ["identity", "relu", "silu"]
REDUCTIONS = ["sum", "mean", "max"]
# name: (nodes N, edges E, hidden H); messages flow src -> dst, so the segments are the N nodes
CASES = {
    "one_edge": (2, 1, 5),
    "no_edges": (3, 0, 5),
    "empty_graph": (0, 0, 4),
    "isolated_nodes": (12, 5, 33),
    "over_a_block": (2, 3 * BLOCK_K + 1, MAX_BLOCK_H + 1),  # ~24 rows a segment
}


def message_problem(num_nodes, num_edges, H, device, *, sort_dst=False):
    src, dst = random_edges(num_nodes, num_edges, sort_dst=sort_dst, device=device)
    inputs = {"a": torch.randn(num_nodes, H, device=device), "c": torch.randn(num_edges, H, device=device)}
    return src, segments_of(dst, num_nodes), inputs


def compare(src, groups, inputs, reduce, activation, dtype=torch.float32, atol=1e-5, rtol=1e-5, **kwargs):
    rowptr, perm = groups
    check_against_reference(
        lambda a, c: gather_act_reduce(a, src, c, rowptr, perm, reduce, activation, **kwargs),
        lambda a, c: gather_act_reduce_reference(a, src, c, rowptr, perm, reduce, activation),
        inputs, dtype, atol, rtol,
    )


@pytest.mark.parametrize("reduce", REDUCTIONS)
@pytest.mark.parametrize("dtype, atol, rtol", DTYPE_PARAMS)
@pytest.mark.parametrize("case", CASES)
def test_triton_matches_reference_at_awkward_sizes(triton_backend, device, case, dtype, atol, rtol, reduce):
    src, groups, inputs = message_problem(*CASES[case], device)
    compare(src, groups, inputs, reduce, "relu", dtype, atol, rtol)


@pytest.mark.parametrize("reduce", REDUCTIONS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_triton_matches_reference_for_every_activation(triton_backend, device, activation, reduce):
    src, groups, inputs = message_problem(6, 40, 9, device)
    compare(src, groups, inputs, reduce, activation)


@pytest.mark.parametrize("reduce", REDUCTIONS)
def test_triton_matches_reference_without_perm(triton_backend, device, reduce):
    src, groups, inputs = message_problem(6, 40, 9, device, sort_dst=True)
    assert groups.perm is None
    compare(src, groups, inputs, reduce, "silu")


def test_triton_matches_reference_without_c(triton_backend, device):
    src, (rowptr, perm), inputs = message_problem(6, 40, 9, device)
    check_against_reference(
        lambda a: gather_act_reduce(a, src, None, rowptr, perm, "mean", "silu"),
        lambda a: gather_act_reduce_reference(a, src, None, rowptr, perm, "mean", "silu"),
        {"a": inputs["a"]}, torch.float32, 1e-5, 1e-5,
    )


def test_triton_matches_reference_with_given_groups_a(triton_backend, device):
    src, groups, inputs = message_problem(6, 40, 9, device)
    compare(src, groups, inputs, "max", "relu", groups_a=segments_of(src, 6))


def test_triton_matches_reference_in_the_reverse_direction(triton_backend, device):
    src, dst = random_edges(6, 40, device=device)  # messages dst -> src: gather by dst, group by src
    inputs = {"a": torch.randn(6, 9, device=device), "c": torch.randn(40, 9, device=device)}
    compare(dst, segments_of(src, 6), inputs, "sum", "silu", groups_a=segments_of(dst, 6))


def test_triton_accepts_int32_strided_indices(triton_backend, device):
    src, (rowptr, perm), inputs = message_problem(6, 40, 9, device)
    src32 = torch.stack([src, src], 1).int()[:, 0]
    rowptr32, perm32 = torch.stack([rowptr, rowptr], 1).int()[:, 1], torch.stack([perm, perm], 1).int()[:, 1]
    check_against_reference(
        lambda a, c: gather_act_reduce(a, src32, c, rowptr32, perm32, "max", "relu"),
        lambda a, c: gather_act_reduce_reference(a, src, c, rowptr, perm, "max", "relu"),
        inputs, torch.float32, 1e-5, 1e-5,
    )


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_max_gradient_goes_to_the_first_maximum(request, device, backend):
    request.getfixturevalue(f"{backend}_backend")
    a = torch.tensor([[1.0, -1.0], [1.0, -2.0]], device=device, requires_grad=True)
    c = torch.zeros(3, 2, device=device, requires_grad=True)
    src, dst = torch.tensor([1, 0, 1], device=device), torch.tensor([0, 0, 0], device=device)
    out = gather_act_reduce(a, src, c, *segments_of(dst, 1), reduce="max", activation="identity")
    out.backward(torch.tensor([[10.0, 20.0]], device=device))
    assert out.tolist() == [[1.0, -1.0]]
    assert c.grad.tolist() == [[10.0, 0.0], [0.0, 20.0], [0.0, 0.0]]
    assert a.grad.tolist() == [[0.0, 20.0], [10.0, 0.0]]


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_max_gradient_goes_to_the_first_maximum_across_blocks(request, device, backend):
    request.getfixturevalue(f"{backend}_backend")
    num_edges = 2 * BLOCK_K + 1
    a = torch.full((2, 3), -1.0, device=device, requires_grad=True)  # every message is -1: all tie
    c = torch.zeros(num_edges, 3, device=device, requires_grad=True)
    src = torch.zeros(num_edges, dtype=torch.long, device=device)
    dst = torch.ones(num_edges, dtype=torch.long, device=device)
    out = gather_act_reduce(a, src, c, *segments_of(dst, 2), reduce="max", activation="identity")
    out.backward(torch.ones_like(out))
    assert c.grad[0].eq(1).all() and c.grad[1:].eq(0).all()


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_relu_gradient_at_zero_is_zero(request, device, backend):
    request.getfixturevalue(f"{backend}_backend")
    a = torch.zeros(2, 3, device=device, requires_grad=True)
    c = torch.zeros(4, 3, device=device, requires_grad=True)
    src, dst = torch.tensor([0, 1, 1, 0], device=device), torch.tensor([1, 1, 0, 0], device=device)
    gather_act_reduce(a, src, c, *segments_of(dst, 2), reduce="sum", activation="relu").sum().backward()
    assert a.grad.eq(0).all() and c.grad.eq(0).all()


@pytest.mark.parametrize("reduce", REDUCTIONS)
def test_triton_gradients_are_deterministic(triton_backend, device, reduce):
    src, (rowptr, perm), inputs = message_problem(5, 80, 33, device)
    op = lambda a, c: gather_act_reduce(a, src, c, rowptr, perm, reduce, "silu")  # noqa: E731
    first, second = triton_gradients(op, inputs), triton_gradients(op, inputs)
    for k in inputs:
        assert torch.equal(first[k], second[k]), k


@pytest.mark.parametrize("reduce", REDUCTIONS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_torch_path_passes_gradcheck(torch_backend, activation, reduce):
    src, (rowptr, perm), inputs = message_problem(4, 9, 3, "cpu")
    a, c = (x.double().requires_grad_() for x in inputs.values())
    assert torch.autograd.gradcheck(
        lambda a, c: gather_act_reduce(a, src, c, rowptr, perm, reduce, activation), (a, c))


def test_torch_path_aggregates_messages_into_destinations(torch_backend):
    src, dst = torch.tensor([0, 1, 1]), torch.tensor([1, 0, 1])
    a, c = torch.tensor([[1.0], [-3.0]]), torch.tensor([[0.0], [1.0], [5.0]])
    out = gather_act_reduce(a, src, c, *segments_of(dst, 3), reduce="mean", activation="relu")
    assert out.tolist() == [[0.0], [1.5], [0.0]]


GOOD = {"a": torch.zeros(3, 4), "index_a": torch.tensor([0, 2]), "c": torch.zeros(2, 4),
        "rowptr": torch.tensor([0, 1, 2]), "perm": torch.tensor([1, 0])}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"reduce": "prod"}, r"expected reduce to be one of 'sum', 'mean', 'max' \(got 'prod'\)"),
        ({"activation": "tanh"}, r"expected activation to be one of 'identity', 'relu', 'silu' \(got 'tanh'\)"),
        ({"c": torch.zeros(3, 4)}, r"expected c to have 2 rows \(got shape \(3, 4\)\)"),
        ({"perm": torch.tensor([0])}, r"expected perm to have one entry per row of index_a \(2\) \(got 1\)"),
        ({"rowptr": torch.tensor([0, 1, 3])}, r"expected rowptr to start at 0, be non-decreasing and end at <= 2"),
        ({"groups_a": segments_of(torch.tensor([0, 1]), 2)}, r"expected groups_a.rowptr to have 4 entries"),
        ({"index_a": torch.tensor([0, 5])}, r"expected index_a values in \[0, 3\) \(got values in \[0, 5\]\)"),
    ],
)
def test_invalid_arguments_are_rejected_with_clear_errors(monkeypatch, change, message):
    monkeypatch.setenv("GMNFX_DEBUG", "1")
    with pytest.raises(ValueError, match=message):
        gather_act_reduce(**{**GOOD, **change})
