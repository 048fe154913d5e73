"""segment_reduce: Triton (interpreter on CPU) against the torch reference; the reference against a loop."""
import pytest
import torch

from gmnfx.kernels import segment_reduce, segment_reduce_reference, segments_of
from gmnfx.kernels.segment_reduce import BLOCK_K, MAX_BLOCK_H
from kernel_checks import DTYPE_PARAMS, assert_close, check_against_reference, triton_gradients

REDUCTIONS = ["sum", "mean", "max"]
# name: (segments S, rows M, columns H)
CASES = {
    "one_row": (2, 1, 5),
    "no_rows": (3, 0, 5),
    "no_segments": (0, 0, 4),
    "empty_segments": (12, 5, 33),
    "over_a_block": (2, 3 * BLOCK_K + 1, MAX_BLOCK_H + 1),  # ~24 rows a segment
}


def random_problem(num_segments, num_rows, H, device, *, sort=False):
    index = torch.randint(0, max(num_segments, 1), (num_rows,), device=device)
    rowptr, perm = segments_of(index.sort().values if sort else index, num_segments)
    return torch.randn(num_rows, H, device=device), rowptr, perm


def loop_oracle(values, rowptr, perm, reduce):
    """out[s] by a Python loop over the segments (the docstring's definition)."""
    rows = perm if perm is not None else torch.arange(values.shape[0])
    out = torch.zeros(rowptr.numel() - 1, values.shape[1], dtype=values.dtype)
    for s in range(out.shape[0]):
        members = values[rows[rowptr[s]:rowptr[s + 1]]]
        if len(members):
            out[s] = {"sum": members.sum(0), "mean": members.mean(0), "max": members.max(0).values}[reduce]
    return out


@pytest.mark.parametrize("reduce", REDUCTIONS)
@pytest.mark.parametrize("case", CASES)
def test_reference_matches_a_python_loop(case, reduce):
    values, rowptr, perm = random_problem(*CASES[case], "cpu")
    expected = loop_oracle(values, rowptr, perm, reduce)
    assert_close(segment_reduce_reference(values, rowptr, perm, reduce), expected, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("reduce", REDUCTIONS)
@pytest.mark.parametrize("dtype, atol, rtol", DTYPE_PARAMS)
@pytest.mark.parametrize("case", CASES)
def test_triton_matches_reference(triton_backend, device, case, dtype, atol, rtol, reduce):
    values, rowptr, perm = random_problem(*CASES[case], device)
    check_against_reference(
        lambda values: segment_reduce(values, rowptr, perm, reduce),
        lambda values: segment_reduce_reference(values, rowptr, perm, reduce),
        {"values": values}, dtype, atol, rtol,
    )


@pytest.mark.parametrize("reduce", REDUCTIONS)
def test_triton_matches_reference_without_perm(triton_backend, device, reduce):
    values, rowptr, perm = random_problem(7, 40, 9, device, sort=True)
    assert perm is None
    check_against_reference(
        lambda values: segment_reduce(values, rowptr, None, reduce),
        lambda values: segment_reduce_reference(values, rowptr, None, reduce),
        {"values": values}, torch.float32, 1e-5, 1e-5,
    )


def tied_values(device):
    """Two segments of rows {1, 2} and {0, 3}: column 0 ties inside each, column 1 does not."""
    values = torch.tensor([[5.0, 1.0], [2.0, 0.0], [2.0, 3.0], [5.0, 2.0]], device=device)
    return values, *segments_of(torch.tensor([1, 0, 0, 1], device=device), 2)


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_max_gradient_goes_to_the_first_maximum(request, device, backend):
    request.getfixturevalue(f"{backend}_backend")
    values, rowptr, perm = tied_values(device)
    values.requires_grad_()
    out = segment_reduce(values, rowptr, perm, "max")
    out.backward(torch.tensor([[10.0, 20.0], [30.0, 40.0]], device=device))
    assert out.tolist() == [[2.0, 3.0], [5.0, 2.0]]
    assert values.grad.tolist() == [[30.0, 0.0], [10.0, 0.0], [0.0, 20.0], [0.0, 40.0]]


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_max_gradient_goes_to_the_first_maximum_across_blocks(request, device, backend):
    request.getfixturevalue(f"{backend}_backend")
    values = torch.ones(2 * BLOCK_K + 1, 3, device=device, requires_grad=True)
    perm = torch.arange(values.shape[0], device=device).flip(0)  # position 0 is the last row
    rowptr = torch.tensor([0, values.shape[0]], device=device)
    segment_reduce(values, rowptr, perm, "max").sum().backward()
    assert values.grad[-1].eq(1).all() and values.grad[:-1].eq(0).all()


def test_triton_rows_outside_every_segment_get_zero_gradient(triton_backend, device):
    values = torch.randn(6, 3, device=device, requires_grad=True)
    rowptr = torch.tensor([0, 2, 4], device=device)  # rows 4 and 5 belong to no segment
    segment_reduce(values, rowptr).sum().backward()
    assert values.grad[:4].eq(1).all() and values.grad[4:].eq(0).all()


@pytest.mark.parametrize("reduce", REDUCTIONS)
def test_triton_gradients_are_deterministic(triton_backend, device, reduce):
    values, rowptr, perm = random_problem(5, 60, 33, device)
    op = lambda values: segment_reduce(values, rowptr, perm, reduce)  # noqa: E731
    first, second = triton_gradients(op, {"values": values}), triton_gradients(op, {"values": values})
    assert torch.equal(first["values"], second["values"])


@pytest.mark.parametrize("reduce", REDUCTIONS)
def test_torch_path_passes_gradcheck(torch_backend, reduce):
    values, rowptr, perm = random_problem(4, 9, 3, "cpu")
    values = values.double().requires_grad_()
    assert torch.autograd.gradcheck(lambda v: segment_reduce(v, rowptr, perm, reduce), (values,))


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"reduce": "min"}, ValueError, r"expected reduce to be one of 'sum', 'mean', 'max' \(got 'min'\)"),
        ({"perm": torch.arange(3)}, ValueError, r"expected perm to have one entry per row of values \(4\) \(got 3\)"),
        ({"values": torch.zeros(4)}, ValueError, r"expected values to be a 2-D floating tensor \(got shape \(4,\)"),
        ({"rowptr": torch.tensor([1, 4])}, ValueError, r"expected rowptr to start at 0"),
    ],
)
def test_invalid_arguments_are_rejected_with_clear_errors(monkeypatch, kwargs, error, message):
    monkeypatch.setenv("GMNFX_DEBUG", "1")
    arguments = {"values": torch.zeros(4, 2), "rowptr": torch.tensor([0, 4]), **kwargs}
    with pytest.raises(error, match=message):
        segment_reduce(**arguments)
