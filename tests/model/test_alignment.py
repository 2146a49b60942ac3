"""Depth alignment to the memory (model/memory/alignment.py): robust fits, disagreement, the prior's anchoring.

Synthetic cells with known scale/shift, outliers and noise; tolerances follow the noise levels used.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from model.geometry.camera import intrinsics_from_fov
from model.memory.alignment import (
    MIN_FIT_CELLS,
    align_depth,
    anchor_to_readout,
    fit_depth,
    landed_cells,
    reject_cells,
)
from model.memory.base import CellLabel
from model.memory.latent import downsample_depth


def noisy(n, seed=0, noise=0.02):
    g = torch.Generator().manual_seed(seed)
    ref = 1.0 + 5.0 * torch.rand(n, generator=g, dtype=torch.float64)
    return ref, 1.0 + noise * torch.randn(n, generator=g, dtype=torch.float64)


def test_scale_fit_ignores_a_quarter_of_outliers():
    ref, factor = noisy(800)
    pred = ref / 1.7 * factor
    pred[:200] *= 2.5  # a moving object, or a surface the model got wrong
    fit = fit_depth(pred, ref)
    assert fit.scale == pytest.approx(1.7, rel=0.01) and fit.shift == 0.0 and fit.cells == 800
    assert fit.residual < 0.03  # median |log| of 2 % noise, outliers excluded by the median


def test_affine_fit_recovers_scale_and_shift():
    ref, factor = noisy(800, seed=1)
    pred = (ref - 0.5) / 1.3 * factor
    pred[:150] *= 0.5
    fit = fit_depth(pred, ref, "affine")
    assert fit.scale == pytest.approx(1.3, rel=0.03) and fit.shift == pytest.approx(0.5, abs=0.05)
    scale_only = fit_depth(pred, ref, "scale")
    assert fit.residual < 0.5 * scale_only.residual, "a shift the scale alone cannot explain"


def test_fit_edge_cases():
    assert fit_depth(torch.zeros(0), torch.zeros(0)).scale == 1.0
    assert fit_depth(torch.tensor([math.inf, -1.0]), torch.tensor([2.0, 2.0])).cells == 0
    flat = fit_depth(torch.full((50,), 2.0), torch.full((50,), 3.0), "affine")  # one depth: no shift to find
    assert 2.0 * flat.scale + flat.shift == pytest.approx(3.0)
    with pytest.raises(ValueError, match="alignment mode"):
        fit_depth(torch.ones(3), torch.ones(3), "median")


def blocks(cells, stride=4):
    return F.interpolate(cells[:, None], scale_factor=stride, mode="nearest")[:, 0]


def test_align_depth_rescales_each_frame_and_flags_disagreeing_cells():
    readout = (2.0 + 0.05 * torch.arange(16.0) + 0.1 * torch.arange(8.0)[:, None]).expand(2, 8, 16).clone()
    visible = torch.ones(2, 8, 16, dtype=torch.bool)
    visible[:, :, 12:] = False  # new content: fitted on nothing, never "disagrees"
    model = blocks(readout) * torch.tensor([0.6, 1.5])[:, None, None]
    model[0, 8:12, 8:12] *= 0.5  # an object nearer than the memory's surface in one cell of frame 0
    out = align_depth(model, readout, visible, visible)
    assert [f.scale for f in out.fits] == pytest.approx([1 / 0.6, 1 / 1.5], rel=1e-4)
    expected = torch.zeros(2, 8, 16, dtype=torch.bool)
    expected[0, 2, 2] = True
    assert torch.equal(out.disagree, expected)
    assert out.residual == pytest.approx(0.0, abs=1e-5)
    assert torch.allclose(downsample_depth(out.depth, 8, 16)[:, :, 12:], readout[:, :, 12:], rtol=1e-4)


def test_frames_with_too_few_cells_borrow_the_segment_fit():
    readout = torch.full((2, 8, 16), 2.0)
    confident = torch.zeros(2, 8, 16, dtype=torch.bool)
    confident[0] = True
    confident[1, 0, : MIN_FIT_CELLS // 2] = True
    out = align_depth(blocks(readout) * 0.5, readout, confident, confident)
    assert out.fits[0].cells == 128 and out.fits[1].cells == 0 and out.fits[1].residual is None
    assert out.fits[1].scale == pytest.approx(2.0)
    nothing = align_depth(blocks(readout) * 0.5, readout, confident & False, confident & False)
    assert [f.scale for f in nothing.fits] == [1.0, 1.0] and nothing.residual is None


def test_align_depth_checks_its_arguments():
    with pytest.raises(ValueError, match="readout_depth"):
        align_depth(torch.ones(2, 8, 8), torch.ones(3, 2, 2), torch.ones(3, 2, 2), torch.ones(3, 2, 2))
    with pytest.raises(ValueError, match="tolerance"):
        ones = torch.ones(1, 2, 2)
        align_depth(torch.ones(1, 8, 8), ones, ones, ones, tolerance=0.0)


def test_anchor_to_readout_writes_only_the_memory_s_own_depth():
    readout = torch.tensor([[[2.0, 3.0], [4.0, 0.0]]])
    visible = readout > 0
    depth, unanchored = anchor_to_readout(torch.full((1, 8, 8), 6.0), readout, visible)
    assert torch.equal(unanchored, ~visible)
    assert torch.allclose(downsample_depth(depth, 2, 2), torch.tensor([[[2.0, 3.0], [4.0, 6.0]]]))
    with pytest.raises(ValueError, match="whole number"):
        anchor_to_readout(torch.ones(1, 7, 8), readout, visible)


def test_reject_cells_overrides_only_kept_cells():
    keep = torch.tensor([[[True, True, False]]])
    labels = torch.tensor([[[0, 0, int(CellLabel.SKY)]]], dtype=torch.uint8)
    reject_cells(keep, labels, torch.tensor([[[False, True, True]]]), CellLabel.UNANCHORED)
    assert keep.tolist() == [[[True, False, False]]]
    assert labels.tolist() == [[[0, int(CellLabel.UNANCHORED), int(CellLabel.SKY)]]]


def test_landed_cells_are_those_holding_their_winner_s_own_sample():
    K = intrinsics_from_fov(60.0, 8, 4)  # a 4x8 grid
    positions = torch.tensor([[0.0, 0.0, 2.0]])  # projects to the centre: cell (row 2, col 4)
    index = torch.full((1, 4, 8), -1)
    index[0, 1:3, 3:5] = 0  # its footprint covers a 2x2 block
    landed = landed_cells(positions, index, torch.eye(4)[None], K)
    expected = torch.zeros(1, 4, 8, dtype=torch.bool)
    expected[0, 2, 4] = True
    assert torch.equal(landed, expected)
    assert not landed_cells(torch.zeros(0, 3), index, torch.eye(4)[None], K).any()
