"""segments_of: positions grouped by index value in CSR form, with clear errors."""
import pytest
import torch

from gmnfx.kernels import Segments, segments_of


def test_groups_positions_by_index_in_stable_order():
    index = torch.tensor([2, 0, 2, 3, 0, 2])
    rowptr, perm = segments_of(index, 5)
    assert rowptr.tolist() == [0, 2, 2, 5, 6, 6]
    assert perm.tolist() == [1, 4, 0, 2, 5, 3]
    assert rowptr.dtype == perm.dtype == torch.int64


def test_perm_is_none_when_index_is_sorted():
    groups = segments_of(torch.tensor([0, 0, 1, 3]), 4)
    assert isinstance(groups, Segments)
    assert groups.perm is None
    assert groups.rowptr.tolist() == [0, 2, 3, 3, 4]


def test_empty_index_gives_empty_segments():
    rowptr, perm = segments_of(torch.zeros(0, dtype=torch.long), 3)
    assert rowptr.tolist() == [0, 0, 0, 0]
    assert perm is None


def test_no_segments():
    assert segments_of(torch.zeros(0, dtype=torch.long), 0).rowptr.tolist() == [0]


def test_int32_index_gives_int64_segments():
    rowptr, perm = segments_of(torch.tensor([1, 0], dtype=torch.int32), 2)
    assert rowptr.dtype == perm.dtype == torch.int64


def test_segments_match_a_python_grouping_on_random_indices():
    index = torch.randint(0, 7, (50,))
    rowptr, perm = segments_of(index, 9)
    for s in range(9):
        members = perm[rowptr[s]:rowptr[s + 1]].tolist()
        assert members == [m for m in range(50) if index[m] == s]


@pytest.mark.parametrize(
    "index, num_segments, message",
    [
        (torch.zeros(2, 2, dtype=torch.long), 3, r"expected index to be a 1-D integer tensor \(got shape \(2, 2\)"),
        (torch.zeros(3), 3, r"expected index to be a 1-D integer tensor .*dtype torch.float32"),
        (torch.tensor([0, 3]), 3, r"expected index values in \[0, 3\) \(got values in \[0, 3\]\)"),
        (torch.tensor([-1, 0]), 3, r"expected index values in \[0, 3\) \(got values in \[-1, 0\]\)"),
        (torch.tensor([0]), -1, r"expected num_segments to be an int >= 0 \(got -1\)"),
    ],
)
def test_invalid_arguments_are_rejected_with_clear_errors(index, num_segments, message):
    with pytest.raises(ValueError, match=message):
        segments_of(index, num_segments)
