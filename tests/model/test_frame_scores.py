"""Frames scored whole and split into the pixels a memory covered (visible) and the rest (holes)."""

import math

import numpy as np
import pytest

from model.eval.frame_scores import SCORES, frame_scores, mean_scores


def test_the_split_scores_each_pixel_set_on_its_own():
    rng = np.random.default_rng(0)
    reference = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
    visible = np.zeros((32, 48), bool)
    visible[:, :16] = True  # a third of the frame
    frame = reference.copy()
    frame[~visible] = np.clip(reference[~visible].astype(int) + np.where(reference[~visible] < 128, 10, -10), 0, 255)
    scores = frame_scores(frame, reference, visible)
    assert set(scores) == set(SCORES)
    assert scores["psnr_visible"] == math.inf  # exact where visible
    assert scores["psnr_holes"] == pytest.approx(10 * math.log10(255**2 / 100))  # 10 grey levels everywhere else
    assert scores["psnr"] == pytest.approx(10 * math.log10(255**2 / (100 * 2 / 3)))
    assert scores["visible_fraction"] == pytest.approx(1 / 3)
    assert scores["ssim_holes"] < scores["ssim"] < scores["ssim_visible"] <= 1.0
    # the split swapped swaps the scores: the function reads the mask, not the layout
    swapped = frame_scores(frame, reference, ~visible)
    assert swapped["psnr_holes"] == math.inf and swapped["psnr_visible"] == pytest.approx(scores["psnr_holes"])


def test_an_empty_pixel_set_scores_nan_and_means_leave_it_out():
    frame = np.zeros((8, 8, 3), np.uint8)
    everything = frame_scores(frame, frame + 1, np.ones((8, 8), bool))
    assert math.isnan(everything["psnr_holes"]) and math.isnan(everything["ssim_holes"])
    nothing = frame_scores(frame, frame + 4, np.zeros((8, 8), bool))
    means = mean_scores([everything, nothing])
    assert means["psnr_holes"] == pytest.approx(nothing["psnr_holes"])  # NaN left out
    assert means["psnr"] == pytest.approx((everything["psnr"] + nothing["psnr"]) / 2)  # mean in dB
    assert means["visible_fraction"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="visible"):
        frame_scores(frame, frame, np.ones((4, 4), bool))
