"""Tests of model/memory/masks.py: sky, dynamic cells, user masks and the combined write labels."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from model.generation.depth import ModelFolderError
from model.memory.latent import CellLabel
from model.memory.masks import (
    SemanticSkySegmenter,
    cell_fraction,
    change_score,
    confident_cells,
    dynamic_mask,
    sky_label_ids,
    sky_mask,
    user_cell_mask,
    write_masks,
)

INF = math.inf


def test_sky_mask_far_and_invalid():
    depth = torch.tensor([[[1.0, 59.9, 60.1, INF, 0.0, -1.0, float("nan")]]])
    assert sky_mask(depth, far_m=60.0).tolist() == [[[False, False, True, True, True, True, True]]]
    with pytest.raises(ValueError, match="far_m"):
        sky_mask(depth, far_m=0.0)


# --------------------------------------------------------------------------------------------
# dynamic
# --------------------------------------------------------------------------------------------


def _features(seed: int = 0, frames: int = 2, channels: int = 48, h: int = 12, w: int = 16) -> torch.Tensor:
    return torch.randn(frames, channels, h, w, generator=torch.Generator().manual_seed(seed))


def test_dynamic_mask_flags_the_perturbed_region_only():
    readout = _features()
    latents = readout + 0.05 * _features(seed=1)  # faithful regeneration with a little noise
    obj = 3.0 * torch.randn(48, generator=torch.Generator().manual_seed(2))
    latents[1, :, 4:7, 5:9] = obj[:, None, None]  # an object of another "colour" appears there
    visible = torch.ones(2, 12, 16, dtype=torch.bool)
    mask = dynamic_mask(latents, readout, visible)
    expected = torch.zeros(2, 12, 16, dtype=torch.bool)
    expected[1, 4:7, 5:9] = True
    assert torch.equal(mask, expected)


def test_change_score_needs_both_no_matching_neighbour_and_a_changed_context():
    readout = _features(frames=1)
    visible = torch.ones(1, 12, 16, dtype=torch.bool)
    obj = 3.0 * torch.randn(48, generator=torch.Generator().manual_seed(3))
    single = readout.clone()
    single[0, :, 6, 6] = obj  # one odd cell: nothing nearby matches it, but its context barely moves
    block = readout.clone()
    block[0, :, 6:8, 6:8] = obj[:, None, None]  # a 2x2 object
    assert (
        change_score(single, readout, visible)[0, 6, 6] < 0.5 < change_score(block, readout, visible)[0, 6:8, 6:8].min()
    )
    # the match term alone would have flagged the single cell: its best neighbour is far off
    best_match = (single[0, :, 6, 6, None, None] - readout[0, :, 5:8, 5:8]).square().mean(0).sqrt().min()
    assert best_match > 2.0 * readout[0].std()


def test_change_score_is_scale_and_offset_free_and_tolerates_one_cell_shift():
    readout = _features()
    latents = readout.clone()
    latents[0, :, 3:5, 3:5] += 3.0
    visible = torch.ones(2, 12, 16, dtype=torch.bool)
    score = change_score(latents, readout, visible)
    offset = torch.linspace(-5, 5, 48).view(1, 48, 1, 1)
    torch.testing.assert_close(
        change_score(7.0 * latents + offset, 7.0 * readout + offset, visible), score, rtol=1e-4, atol=1e-4
    )
    # exact 0 on the unchanged frame: each cell's own readout is among its neighbours, so the match term is 0
    assert score[0, 3:5, 3:5].min() > 1.0 and score[1].max() == 0.0
    shifted = torch.roll(readout, shifts=1, dims=3)  # reprojection off by one cell
    assert change_score(shifted, readout, visible)[:, :, 1:].max() < 1e-6


def test_confident_cells_need_a_fully_visible_neighbourhood():
    visible = torch.ones(1, 6, 8, dtype=torch.bool)
    visible[0, 3, 4] = False  # a hole
    conf = confident_cells(visible)
    expected = torch.ones(1, 6, 8, dtype=torch.bool)
    expected[0, 2:5, 3:6] = False  # the hole and its 8 neighbours
    assert torch.equal(conf, expected)
    assert conf[0, 0, 0]  # the grid border is not a hole


def test_confident_only_ignores_changes_next_to_holes():
    readout = _features(frames=1)
    visible = torch.ones(1, 12, 16, dtype=torch.bool)
    visible[0, 5, 5] = False
    readout = readout * visible[:, None]  # the memory reads zeros where nothing is visible
    latents = readout.clone()
    latents[0, :, 5, 6] = 10.0  # next to the hole: not confident
    latents[0, :, 5, 5] = 10.0  # the hole itself: new content, never dynamic
    latents[0, :, 9, 12] = 10.0  # a confident cell
    assert change_score(latents, readout, visible)[0, 5, 6] > 1.0  # changed, yet not flagged
    mask = dynamic_mask(latents, readout, visible, confident_only=True)
    assert mask[0, 9, 12] and not mask[0, 5, 6] and not mask[0, 5, 5] and int(mask.sum()) == 1
    default = dynamic_mask(latents, readout, visible)  # by default any visible cell may be flagged
    assert default[0, 9, 12] and default[0, 5, 6] and not default[0, 5, 5]


def test_dynamic_mask_checks_shapes_and_threshold():
    x = _features()
    with pytest.raises(ValueError, match="visible"):
        dynamic_mask(x, x, torch.ones(2, 12, 15, dtype=torch.bool))
    with pytest.raises(ValueError, match="threshold"):
        dynamic_mask(x, x, torch.ones(2, 12, 16, dtype=torch.bool), threshold=0.0)


# --------------------------------------------------------------------------------------------
# pixel masks -> cells, combined labels
# --------------------------------------------------------------------------------------------


def test_user_mask_excludes_cells_with_any_pixel():
    user = torch.zeros(8, 8, dtype=torch.bool)
    user[0, 0] = True  # one pixel of cell (0, 0)
    user[4:8, 4:8] = True  # the whole of cell (1, 1)
    cells = user_cell_mask(user, 3, 2, 2)
    assert cells.shape == (3, 2, 2)
    assert cells[:, 0, 0].all() and cells[:, 1, 1].all() and not cells[:, 0, 1].any() and not cells[:, 1, 0].any()
    with pytest.raises(ValueError, match="user_mask"):
        user_cell_mask(torch.zeros(2, 8, 8, dtype=torch.bool), 3, 2, 2)


def test_cell_fraction_is_the_share_of_pixels():
    mask = torch.zeros(1, 4, 4, dtype=torch.bool)
    mask[0, :2, :1] = True
    assert cell_fraction(mask, 2, 2).tolist() == [[[0.5, 0.0], [0.0, 0.0]]]  # exact: means of a few 0/1 values


def test_sky_needs_a_strict_majority_of_pixels():
    # four 4x4 cells; the memory samples each cell's depth from its centre 2x2 pixels (rows 1-2, cols 1-2)
    depth = torch.full((1, 4, 16), 3.0)
    depth[0, :, 0:4] = 100.0
    depth[0, 1:3, 1:3] = 3.0  # cell 0: 12 of 16 pixels far, but its depth sample is near
    depth[0, [0, 3], 4:8] = 100.0  # cell 1: exactly half far
    depth[0, 0, 8] = 100.0  # cell 2: one far pixel
    semantic = torch.zeros(1, 4, 16, dtype=torch.bool)
    semantic[0, :3, 12:16] = True  # cell 3: semantic sky on 12 of 16 pixels, all depth near
    _, labels = write_masks(depth, (1, 4), far_m=60.0, semantic_sky=semantic)
    assert labels[0, 0].tolist() == [CellLabel.SKY, CellLabel.STATIC, CellLabel.STATIC, CellLabel.SKY]


def test_sky_when_the_cell_depth_sample_itself_is_far():
    depth = torch.full((1, 4, 4), 3.0)
    depth[0, 1:3, 1:3] = 80.0  # only the 4 centre pixels (25 %) but they are the cell's depth sample
    _, labels = write_masks(depth, (1, 1), far_m=60.0)
    assert labels.tolist() == [[[CellLabel.SKY]]]


def test_write_masks_precedence_invalid_sky_dynamic_static():
    depth = torch.full((2, 8, 8), 2.0)
    depth[0, 0:4, 0:4] = INF  # cell (0,0): invalid
    depth[0, 0:4, 4:8] = 500.0  # cell (0,1): sky
    dynamic = torch.ones(2, 2, 2, dtype=torch.bool)  # every cell "moves"
    dynamic[1] = False
    user = torch.zeros(8, 8, dtype=torch.bool)
    user[7, 7] = True  # one pixel of cell (1,1) in both frames
    keep, labels = write_masks(depth, (2, 2), far_m=60.0, dynamic=dynamic, user_mask=user)
    assert labels.dtype == torch.uint8 and keep.dtype == torch.bool
    assert labels[0].tolist() == [[CellLabel.INVALID, CellLabel.SKY], [CellLabel.DYNAMIC, CellLabel.DYNAMIC]]
    assert labels[1].tolist() == [[CellLabel.STATIC, CellLabel.STATIC], [CellLabel.STATIC, CellLabel.DYNAMIC]]
    assert torch.equal(keep, labels == CellLabel.STATIC)


def test_write_masks_invalid_matches_the_memory_depth_sample():
    depth = torch.full((1, 8, 8), 2.0)
    depth[0, 1, 2] = 0.0  # inside the bilinear footprint of cell (0, 0)'s centre (rows/cols 1-2)
    depth[0, 0, 4] = 0.0  # a corner of cell (0, 1), outside its footprint (rows 1-2, cols 5-6)
    _, labels = write_masks(depth, (2, 2))
    assert labels[0].tolist() == [[CellLabel.INVALID, CellLabel.STATIC], [CellLabel.STATIC, CellLabel.STATIC]]


def test_write_masks_checks_inputs():
    depth = torch.ones(1, 8, 8)
    with pytest.raises(ValueError, match="depth"):
        write_masks(depth[0], (2, 2))
    with pytest.raises(ValueError, match="dynamic"):
        write_masks(depth, (2, 2), dynamic=torch.zeros(1, 3, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="semantic_sky"):
        write_masks(depth, (2, 2), semantic_sky=torch.zeros(1, 4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="latent grid"):
        write_masks(depth, (16, 2))


# --------------------------------------------------------------------------------------------
# semantic sky from a tiny random SegFormer
# --------------------------------------------------------------------------------------------


def test_sky_label_ids():
    assert sky_label_ids({0: "wall", 1: "building", 2: "Sky", 3: "skyscraper", 4: "sky, heaven"}) == [2, 4]
    assert sky_label_ids({"0": "wall"}) == []


def test_semantic_sky_segmenter_runs_on_a_tiny_segformer(tmp_path, save_tiny_segformer):
    save_tiny_segformer(tmp_path, {0: "wall", 1: "building", 2: "sky"})
    segmenter = SemanticSkySegmenter(tmp_path, batch_size=2)
    assert segmenter.sky_ids == [2]
    images = (np.random.default_rng(0).random((3, 40, 56, 3)) * 255).astype(np.uint8)
    sky = segmenter.segment(torch.from_numpy(images))
    assert sky.shape == (3, 40, 56) and sky.dtype == torch.bool
    save_tiny_segformer(tmp_path / "all-sky", {0: "wall", 1: "sky"}, always=1)
    assert SemanticSkySegmenter(tmp_path / "all-sky").segment(torch.from_numpy(images)).all()


def test_semantic_sky_segmenter_without_a_sky_class(tmp_path, save_tiny_segformer):
    save_tiny_segformer(tmp_path, {0: "wall", 1: "floor"})
    with pytest.raises(ModelFolderError, match="no class labelled 'sky'"):
        SemanticSkySegmenter(tmp_path)
