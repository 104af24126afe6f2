import pytest

from suite.errors import InputError
from suite.run.slots import parse_gpu_ids, parse_parallel, slot_count, static_slots, take_gpus


def test_slot_count_is_floor_of_gpus_over_cell_gpus_capped_by_parallel():
    assert slot_count(8, 1, None) == 8
    assert slot_count(8, 3, None) == 2
    assert slot_count(8, 2, 3) == 3
    assert slot_count(8, 2, 10) == 4
    assert slot_count(2, 4, None) == 0  # does not fit at all
    assert slot_count(4, 4, 2) == 1


def test_static_slots_are_disjoint_and_aligned():
    assert static_slots(list(range(8)), 2, None) == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert static_slots(list(range(8)), 3, None) == [[0, 1, 2], [3, 4, 5]]
    assert static_slots([4, 5, 6, 7], 1, 2) == [[4], [5]]
    slots = static_slots(list(range(8)), 1, None)
    assert sorted(g for s in slots for g in s) == list(range(8))


def test_take_prefers_aligned_then_contiguous_then_any():
    allg = [0, 1, 2, 3]
    assert take_gpus([1, 2, 3], allg, 2) == [2, 3]
    assert take_gpus([1, 2], allg, 2) == [1, 2]
    assert take_gpus([0, 3], allg, 2) == [0, 3]
    assert take_gpus([0], allg, 2) is None


def test_parse_options():
    assert parse_parallel("auto") is None and parse_parallel("3") == 3
    assert parse_gpu_ids("0, 2,3") == [0, 2, 3]
    for bad in ("0", "-1", "x"):
        with pytest.raises(InputError, match="--parallel"):
            parse_parallel(bad)
    for bad in ("a,b", "1,1", ""):
        with pytest.raises(InputError, match="--gpus"):
            parse_gpu_ids(bad)
