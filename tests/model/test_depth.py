"""Tests of model/generation/depth.py: estimators, depth files, the prior, intrinsics resolution."""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pytest
import torch
from PIL import Image

from model.generation.depth import (
    DEFAULT_FOV_LONG_SIDE_DEG,
    DepthEstimator,
    DepthSource,
    ExactDepth,
    PriorDepth,
    PriorDepthWarning,
    TransformersDepthEstimator,
    _fov_y_from_result,
    default_intrinsics,
    depth_source_label,
    load_depth_for_photo,
    resolve_intrinsics,
    sanitize_depth,
)
from model.geometry.camera import fov_y_from_intrinsics, intrinsics_from_fov
from model.io.folders import ModelFolderError, check_model_folder
from model.io.images import load_photo

# --------------------------------------------------------------------------------------------
# a tiny random Depth Anything saved with save_pretrained
# --------------------------------------------------------------------------------------------


def _save_tiny_depth_anything(folder, depth_type: str = "metric") -> None:
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config
    from transformers.models.dpt.image_processing_pil_dpt import DPTImageProcessorPil

    backbone = Dinov2Config(
        image_size=28,
        patch_size=14,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        out_indices=[1, 2],
        reshape_hidden_states=False,
    )
    config = DepthAnythingConfig(
        backbone_config=backbone,
        patch_size=14,
        reassemble_hidden_size=16,
        reassemble_factors=[2, 1],
        neck_hidden_sizes=[8, 16],
        fusion_hidden_size=8,
        head_hidden_size=4,
        depth_estimation_type=depth_type,
        max_depth=20,
    )
    torch.manual_seed(0)
    model = DepthAnythingForDepthEstimation(config)
    with torch.no_grad():  # random, non-degenerate head output (the default init gives a constant map)
        for p in model.head.parameters():
            p.normal_(0.0, 0.5)
    model.save_pretrained(folder)
    DPTImageProcessorPil(
        size={"height": 28, "width": 28}, keep_aspect_ratio=True, ensure_multiple_of=14, do_pad=False
    ).save_pretrained(folder)


@pytest.fixture(scope="module")
def tiny_metric_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_da_metric")
    _save_tiny_depth_anything(folder)
    return folder


def test_transformers_estimator_shapes_and_finiteness(tiny_metric_dir):
    estimator = TransformersDepthEstimator(tiny_metric_dir, batch_size=2)
    assert estimator.name.startswith("depth_anything:") and not estimator.is_prior
    assert estimator.alignment == "scale", "a metric model's per-frame scale is fitted to the memory"
    assert depth_source_label(estimator) == estimator.name
    images = (np.random.default_rng(0).random((3, 40, 60, 3)) * 255).astype(np.uint8)
    est = estimator.estimate(images)
    assert est.depth.shape == (3, 40, 60) and est.depth.dtype == torch.float32
    valid = torch.isfinite(est.depth)
    assert valid.float().mean() > 0.9  # sigmoid * max_depth: (0, 20] m, invalid only where it underflows
    assert est.depth[valid].max() <= 20.0 and est.depth.std() > 0
    assert est.fov_y_deg is None  # Depth Anything does not estimate the camera
    assert not est.is_prior


def test_transformers_estimator_batches_agree(tiny_metric_dir):
    images = (np.random.default_rng(1).random((3, 28, 42, 3)) * 255).astype(np.uint8)
    one = TransformersDepthEstimator(tiny_metric_dir, batch_size=1).estimate(images).depth
    three = TransformersDepthEstimator(tiny_metric_dir, batch_size=3).estimate(torch.from_numpy(images)).depth
    torch.testing.assert_close(one, three, rtol=1e-4, atol=1e-4)


def test_relative_depth_model_is_rejected(tmp_path):
    _save_tiny_depth_anything(tmp_path, depth_type="relative")
    with pytest.raises(ModelFolderError, match="relative depth"):
        TransformersDepthEstimator(tmp_path)


def test_model_folder_errors_name_folder_and_missing_files(tmp_path, tiny_metric_dir):
    with pytest.raises(ModelFolderError, match="nowhere.*not found"):
        TransformersDepthEstimator(tmp_path / "nowhere")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "pytorch_model.bin").write_bytes(b"pickle")
    incomplete = (
        r"(?s)m is not a usable depth model folder.*config.json missing.*preprocessor_config.json missing.*pickle"
    )
    with pytest.raises(ModelFolderError, match=incomplete):
        check_model_folder(tmp_path / "m", "depth model")
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    for name in ("config.json", "preprocessor_config.json"):
        (sharded / name).write_text((tiny_metric_dir / name).read_text())
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (sharded / "model.safetensors.index.json").write_text(json.dumps(index))
    (sharded / "model-00001-of-00002.safetensors").write_bytes(b"")
    with pytest.raises(
        ModelFolderError, match=r"model-00002-of-00002.safetensors missing \(listed in model.safetensors.index"
    ):
        check_model_folder(sharded, "depth model")


@pytest.mark.parametrize(("config_name", "kind"), [("DPTConfig", "relative"), ("BertConfig", "unknown")])
def test_relative_and_unknown_model_types_are_rejected_before_loading_weights(tmp_path, config_name, kind):
    import transformers

    (tmp_path / "config.json").write_text(getattr(transformers, config_name)().to_json_string())
    (tmp_path / "preprocessor_config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"")  # never read: rejected from the config
    with pytest.raises(ModelFolderError, match=f"predicts {kind} depth.*metric"):
        TransformersDepthEstimator(tmp_path)


def test_depth_pro_style_focal_gives_vertical_fov():
    # Depth Pro's post-processing returns the focal length in pixels of the target size
    fov = _fov_y_from_result({"predicted_depth": None, "focal_length": torch.tensor(50.0)}, height=100)
    assert fov == pytest.approx(90.0)
    assert _fov_y_from_result({"predicted_depth": None}, height=100) is None
    assert _fov_y_from_result({"focal_length": torch.tensor(float("nan"))}, height=100) is None


# --------------------------------------------------------------------------------------------
# other sources
# --------------------------------------------------------------------------------------------


def test_estimator_sanitises_invalid_to_inf_and_checks_inputs():
    raw = torch.tensor([[[1.0, 0.0], [-2.0, float("nan")]]])
    est = ExactDepth(lambda images: raw, fov_y_deg=50.0).estimate(np.zeros((1, 2, 2, 3), np.uint8))
    assert est.depth.tolist() == [[[1.0, math.inf], [math.inf, math.inf]]]  # exact: kept values are copies
    assert est.fov_y_deg == 50.0 and est.name == "exact"
    with pytest.raises(ValueError, match="uint8"):
        ExactDepth(lambda images: raw).estimate(np.zeros((1, 2, 2, 3), np.float32))
    with pytest.raises(RuntimeError, match="shape"):
        ExactDepth(lambda images: torch.ones(1, 3, 3)).estimate(np.zeros((1, 2, 2, 3), np.uint8))
    assert issubclass(ExactDepth, DepthEstimator)
    assert sanitize_depth(np.array([float("inf"), 3.0])).tolist() == [math.inf, 3.0]


def test_every_estimator_is_a_named_depth_source():
    source: DepthSource = ExactDepth(lambda images: torch.full(images.shape[:3], 2.0))
    depth = source(np.zeros((3, 4, 5, 3), np.uint8), torch.eye(4).repeat(3, 1, 1), torch.eye(3))
    assert depth.shape == (3, 4, 5) and torch.all(depth == 2.0) and source.name == "exact"
    assert source.alignment == "none" and depth_source_label(source) == "exact", "exact depth is written as is"


def test_prior_warns_and_is_flagged(caplog):
    with (
        caplog.at_level(logging.WARNING, logger="model.generation.depth"),
        pytest.warns(PriorDepthWarning, match="no depth model"),
    ):
        prior = PriorDepth(fov_y_deg=60.0)
    assert "flat depth prior" in caplog.text
    est = prior.estimate(np.zeros((2, 60, 80, 3), np.uint8))
    assert prior.is_prior and est.is_prior and "prior" in est.name and depth_source_label(prior) == "prior"
    assert est.depth.shape == (2, 60, 80) and torch.isfinite(est.depth).all()
    top, bottom = est.depth[0, 0], est.depth[0, -1]
    assert torch.all(top == 6.0)  # above the horizon: the backdrop (a copied constant)
    fy = float(intrinsics_from_fov(60.0, 80, 60)[1, 1])
    assert float(bottom[0]) == pytest.approx(1.6 * fy / (59.5 - 30.0), rel=1e-5)  # ground 1.6 m below
    column = est.depth[0, :, 0]
    assert torch.all(column[1:] <= column[:-1])  # depth never grows towards the bottom


def test_file_depth_png_and_npy_round_trip_with_the_photo_crop(tmp_path):
    # photo 100x200 -> 40x40 crops columns 50..150; depth encodes the source column in metres
    cols = np.arange(200, dtype=np.float64)
    depth_m = np.tile(1.0 + cols / 100.0, (100, 1))
    depth_m[:, 100] = 0.0  # an invalid column inside the crop
    Image.fromarray(np.rint(depth_m * 1000).astype(np.uint16)).save(tmp_path / "d.png")
    np.save(tmp_path / "d.npy", depth_m.astype(np.float32))
    Image.fromarray(np.zeros((100, 200, 3), np.uint8)).save(tmp_path / "photo.png")
    photo = load_photo(tmp_path / "photo.png", 40, 40)
    for name in ("d.png", "d.npy"):
        out = load_depth_for_photo(tmp_path / name, 40, 40, photo_size=photo.original_size)
        assert out.shape == (40, 40) and out.dtype == torch.float32
        # output column u samples source column floor(50 + (u + 0.5) * 2.5)
        src = np.floor(50 + (np.arange(40) + 0.5) * 2.5).astype(int)
        expected = np.where(src == 100, np.inf, 1.0 + src / 100.0)
        np.testing.assert_allclose(out[7].numpy(), expected, rtol=1e-6)
        assert torch.all(out == out[0])  # rows identical


def test_file_depth_at_lower_resolution_and_errors(tmp_path):
    np.save(tmp_path / "half.npy", np.full((50, 100), 2.5, np.float32))
    out = load_depth_for_photo(tmp_path / "half.npy", 40, 40, photo_size=(100, 200))
    assert torch.all(out == 2.5)  # exact: nearest-neighbour resampling copies values
    with pytest.raises(ValueError, match="half.npy.*aspect ratio"):
        load_depth_for_photo(tmp_path / "half.npy", 40, 40, photo_size=(100, 100))
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="obj.npy"):
        load_depth_for_photo(tmp_path / "obj.npy", 40, 40)
    (tmp_path / "d.exr").write_bytes(b"\x76\x2f\x31\x01")
    with pytest.raises(ValueError, match="d.exr.*unsupported"):
        load_depth_for_photo(tmp_path / "d.exr", 40, 40)
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(tmp_path / "eight.png")
    with pytest.raises(ValueError, match="eight.png.*16-bit"):
        load_depth_for_photo(tmp_path / "eight.png", 40, 40)


# --------------------------------------------------------------------------------------------
# intrinsics
# --------------------------------------------------------------------------------------------


def test_resolve_intrinsics_order_and_sources():
    given = torch.tensor([[500.0, 0, 310], [0, 505.0, 170], [0, 0, 1]], dtype=torch.float64)
    K, source = resolve_intrinsics(640, 352, given_K=given, exif_focal_px=400.0, depth_fov_y_deg=50.0)
    assert source == "given" and torch.equal(K, given) and K is not given  # exact: a copy
    K, source = resolve_intrinsics(640, 352, exif_focal_px=400.0, depth_fov_y_deg=50.0)
    assert source == "exif" and float(K[0, 0]) == pytest.approx(400.0) and float(K[0, 2]) == 320.0
    K, source = resolve_intrinsics(640, 352, depth_fov_y_deg=50.0)
    assert source == "depth-model" and fov_y_from_intrinsics(K, 352) == pytest.approx(50.0)
    K, source = resolve_intrinsics(640, 352)
    assert source == "default" and torch.equal(K, default_intrinsics(640, 352))  # exact: the same function and inputs
    assert K.dtype == torch.float64 and K.shape == (3, 3)


def test_default_is_the_long_side_fov_for_both_orientations():
    for width, height in ((640, 352), (352, 640)):
        K = default_intrinsics(width, height)
        long_fov = math.degrees(2 * math.atan(0.5 * max(width, height) / float(K[0, 0])))
        assert long_fov == pytest.approx(DEFAULT_FOV_LONG_SIDE_DEG)
        assert float(K[0, 0]) == pytest.approx(float(K[1, 1]))


def test_implausible_sources_fall_through(caplog):
    with caplog.at_level(logging.WARNING, logger="model.generation.depth"):
        K, source = resolve_intrinsics(640, 352, exif_focal_px=1.0, depth_fov_y_deg=45.0)  # 1 px: ~179 degrees
    assert source == "depth-model" and "implausible exif" in caplog.text
    _, source = resolve_intrinsics(640, 352, exif_focal_px=1e6, depth_fov_y_deg=200.0)
    assert source == "default"
    with pytest.raises(ValueError, match="given K"):
        resolve_intrinsics(640, 352, given_K=torch.zeros(3, 3))
