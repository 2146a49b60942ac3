"""Rewind and branch bookkeeping (explorer/history.py): pure, no model."""

import numpy as np
import pytest
import torch

from explorer.history import BranchingHistory, MemoryCheckpoint, trim_checkpoints
from model.memory.latent import LatentSpatialMemory


def test_rewind_keeps_or_drops_the_later_items_and_switch_swaps_them():
    history = BranchingHistory(base=2, start="s2")
    for item in ("a", "b", "c"):
        history.append(item)
    assert history.end == 5 and history.at(2) == "s2" and history.at(4) == "b"
    assert history.rewind(3, keep_as="x") == ["b", "c"] and history.items == ["a"]
    assert history.branches["x"].fork == 3 and history.branches["x"].end == 5
    history.append("d")
    branch = history.switch("x", keep_as="y")
    assert branch.items == ["b", "c"] and history.items == ["a", "b", "c"] and history.end == 5
    assert history.branches["y"].items == ["d"] and "x" not in history.branches
    assert history.rewind(2) == ["a", "b", "c"] and history.branches.keys() == {"y"}, "dropped, not kept"
    with pytest.raises(ValueError, match="cannot go to 1 segments done"):
        history.rewind(1)
    with pytest.raises(ValueError, match="cannot go to 3 segments done"):
        history.switch("y")  # its fork is no longer on this line
    with pytest.raises(KeyError, match="no branch named 'z'"):
        history.switch("z")


def test_a_checkpoint_is_a_copy_that_later_writes_do_not_touch():
    sample_memory = LatentSpatialMemory()
    K = torch.tensor([[16.0, 0, 8], [0, 16.0, 8], [0, 0, 1]], dtype=torch.float64)
    sample_memory.initialize(torch.randn(4, 4, 4), torch.full((16, 16), 2.0), K, torch.eye(4, dtype=torch.float64))
    checkpoint = MemoryCheckpoint.take(
        sample_memory, np.zeros((8, 8, 3), np.uint8), torch.eye(4, dtype=torch.float64), 1, {0: np.eye(4)}
    )
    before = len(sample_memory)
    restored = checkpoint.restore("cpu")
    restored.positions += 1.0  # a change to the restored copy ...
    assert torch.equal(checkpoint.memory.positions, sample_memory.positions), "... leaves the checkpoint as it was"
    assert len(checkpoint.memory) == before and isinstance(restored, LatentSpatialMemory)


def test_checkpoints_beyond_the_budget_are_dropped_oldest_first():
    memory = LatentSpatialMemory()
    K = torch.tensor([[16.0, 0, 8], [0, 16.0, 8], [0, 0, 1]], dtype=torch.float64)
    memory.initialize(torch.randn(4, 4, 4), torch.full((16, 16), 2.0), K, torch.eye(4, dtype=torch.float64))

    def checkpoint(done: int) -> MemoryCheckpoint:
        return MemoryCheckpoint.take(memory, np.zeros((16, 16, 3), np.uint8), torch.eye(4), done, {})

    history = BranchingHistory(0, checkpoint(0))
    for done in (1, 2, 3):
        history.append(checkpoint(done))
    each = history.start.nbytes
    assert each == memory.stats().bytes + 16 * 16 * 3
    assert trim_checkpoints(history, budget_bytes=4 * each) == 0
    assert trim_checkpoints(history, budget_bytes=2 * each + 1) == 2
    assert history.start is None and history.at(1) is None and history.at(2).segments_done == 2
    assert trim_checkpoints(history, budget_bytes=0) == 1 and history.at(3) is not None, "the newest stays"
