import numpy as np
import pytest

from allocbench.protocols import Outcome


def test_merge_keeps_the_rollout_ids_in_order():
    pilot = Outcome(3, np.array([1.0, 0.0]), np.array([5, 7]), rollout_ids=np.array([10, 11]))
    commit = Outcome(3, np.array([0.0, 0.0, 1.0]), np.array([4, 4, 6]), rollout_ids=np.array([40, 41, 42]))
    group = pilot.merge(commit)
    assert group.rollout_ids.tolist() == [10, 11, 40, 41, 42]
    assert group.rewards.tolist() == [1, 0, 0, 0, 1] and group.tokens.tolist() == [5, 7, 4, 4, 6]
    cached = Outcome(3, np.array([1.0]), np.array([5]), reused=1, rollout_ids=np.array([10]))
    again = group.merge(cached)
    assert again.rollout_ids.tolist() == [10, 11, 40, 41, 42, 10] and again.reused == 1


def test_ids_left_out_are_unknown_and_a_wrong_count_is_refused():
    o = Outcome(1, np.array([1.0, 0.0, 1.0]), np.array([3, 3, 3]))
    assert o.rollout_ids.dtype == np.int64 and o.rollout_ids.tolist() == [-1, -1, -1]
    with pytest.raises(ValueError, match="2 rollout ids for 3 rewards"):
        Outcome(1, np.array([1.0, 0.0, 1.0]), np.array([3, 3, 3]), rollout_ids=np.array([1, 2]))
    with pytest.raises(ValueError, match="cannot merge"):
        o.merge(Outcome(2, np.array([1.0]), np.array([3])))

