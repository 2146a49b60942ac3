"""Shared fixtures: one headless (EGL) scene renderer for the whole session; tiny segmentation models.

Before anything else is imported, the user's configuration and caches are moved out of reach: the
explorer's settings (QSettings, native and INI, and ``XDG_CONFIG_HOME`` for child processes) and the
Hugging Face cache (``HF_HOME``) point into one temporary folder for the whole session, so no test
reads or writes the user's settings or models.
"""

import atexit
import os
import shutil
import tempfile
from pathlib import Path

#: The session's stand-in for the user's home configuration (settings, Hugging Face cache).
USER_SANDBOX = Path(tempfile.mkdtemp(prefix="mirage-tests-user-"))
atexit.register(shutil.rmtree, USER_SANDBOX, ignore_errors=True)
os.environ["XDG_CONFIG_HOME"] = str(USER_SANDBOX / "config")
os.environ["HF_HOME"] = str(USER_SANDBOX / "huggingface")
os.environ.pop("HF_HUB_CACHE", None)

import pytest  # noqa: E402
import torch  # noqa: E402
from PySide6.QtCore import QSettings  # noqa: E402

from model.eval.scenes import SceneRenderer  # noqa: E402

for _format in (QSettings.Format.NativeFormat, QSettings.Format.IniFormat):
    QSettings.setPath(_format, QSettings.Scope.UserScope, str(USER_SANDBOX / "config"))


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
