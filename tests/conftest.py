"""Shared fixtures: one headless (EGL) scene renderer for the whole session; tiny segmentation models."""

import pytest
import torch

from model.eval.scenes import SceneRenderer


@pytest.fixture(scope="session")
def renderer():
    """A :class:`model.eval.scenes.SceneRenderer` shared by every test that needs exact RGB-D ground truth."""
    with SceneRenderer() as shared:
        yield shared


def _save_tiny_segformer(folder, labels: dict[int, str], always: int | None = None) -> None:
    """A tiny random SegFormer (semantic segmentation) saved with ``save_pretrained`` into ``folder``.

    Args:
        labels: ``{class id: label}``. always: a class id the model predicts for every pixel (None: random).
    """
    from transformers import SegformerConfig, SegformerForSemanticSegmentation
    from transformers.models.segformer.image_processing_pil_segformer import SegformerImageProcessorPil

    config = SegformerConfig(
        num_encoder_blocks=2,
        depths=[1, 1],
        sr_ratios=[2, 1],
        hidden_sizes=[8, 16],
        num_attention_heads=[1, 2],
        patch_sizes=[7, 3],
        strides=[4, 2],
        mlp_ratios=[2, 2],
        decoder_hidden_size=16,
        num_labels=len(labels),
        id2label=labels,
        label2id={v: k for k, v in labels.items()},
    )
    torch.manual_seed(0)
    model = SegformerForSemanticSegmentation(config)
    if always is not None:
        with torch.no_grad():
            model.decode_head.classifier.weight.zero_()
            model.decode_head.classifier.bias.copy_(10.0 * (torch.arange(len(labels)) == always))
    model.save_pretrained(folder)
    SegformerImageProcessorPil(size={"height": 32, "width": 32}).save_pretrained(folder)


@pytest.fixture
def save_tiny_segformer():
    """``save(folder, labels, always=None)``: write a tiny random SegFormer (see :func:`_save_tiny_segformer`)."""
    return _save_tiny_segformer
