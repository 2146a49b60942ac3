"""The readout refiner: an untrained one passes the readout through; the cell mapping is what it resamples with."""

import pytest
import torch

from model.generation.readout_refiner import ReadoutRefiner
from model.memory.footprint import IDENTITY_MAPPING

B, C, F, h, w = 2, 48, 3, 8, 12


def inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    visible = torch.rand(B, F, h, w, generator=g) > 0.3
    readout = torch.randn(B, C, F, h, w, generator=g) * visible[:, None]
    mapping = torch.randn(B, 6, F, h, w, generator=g) * visible[:, None]
    return readout, visible, mapping


def randomize_head(refiner: ReadoutRefiner, seed: int = 1) -> None:
    torch.manual_seed(seed)
    for p in [*refiner.head.parameters(), *refiner.linear.parameters()]:
        torch.nn.init.normal_(p, std=0.05)


def test_an_untrained_refiner_returns_the_visible_readout_exactly():
    readout, visible, mapping = inputs()
    refiner = ReadoutRefiner(C, width=16, blocks=1)
    with torch.no_grad():
        prior = refiner(readout, visible, mapping)
    assert prior.shape == readout.shape
    assert torch.equal(prior, readout * visible[:, None])  # zero head: exactly the readout, zeros in holes


def test_no_mapping_reads_as_the_identity_and_the_mapping_changes_the_prior():
    readout, visible, mapping = inputs()
    refiner = ReadoutRefiner(C, width=16, blocks=1)
    randomize_head(refiner)
    identity = torch.tensor(IDENTITY_MAPPING).view(1, 6, 1, 1, 1) * visible[:, None]
    with torch.no_grad():
        none = refiner(readout, visible, None)
        same = refiner(readout, visible, identity)
        moved = refiner(readout, visible, mapping)
    assert torch.equal(none, same)  # a per-pixel readout is one pasted as written: m' = 0 exactly
    assert not torch.allclose(none, moved, atol=1e-3)
    assert not torch.allclose(none, readout * visible[:, None], atol=1e-3)  # it fills holes too


def test_frames_are_refined_independently_and_gradients_reach_every_layer():
    readout, visible, mapping = inputs()
    refiner = ReadoutRefiner(C, width=16, blocks=1)
    randomize_head(refiner)
    with torch.no_grad():
        whole = refiner(readout, visible, mapping)
        last = refiner(readout[:, :, -1:], visible[:, -1:], mapping[:, :, -1:])
    torch.testing.assert_close(whole[:, :, -1:], last)
    refiner(readout, visible, mapping).square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in refiner.parameters())


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="width > 0"):
        ReadoutRefiner(C, width=0)
