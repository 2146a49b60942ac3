"""Tests of the generation stack loader: backbone, then memory weights, then offloading (tiny, CPU)."""

import pytest

# A sibling test module: importable by its name in pytest's default (prepend) import mode.
from test_lora import save_wide_tiny_weights

import model.generation.stack
from model.generation.backbone import Backbone, BackboneConfig
from model.generation.lora import LoraSettings, add_lora
from model.generation.stack import attach_before_offload, load_generation_stack

TINY = BackboneConfig(backend="tiny", device="cpu")


@pytest.fixture
def offloads(monkeypatch):
    """Records, at every ``apply_offload``, the LoRA adapters already on the transformer."""
    calls = []
    original = Backbone.apply_offload

    def recording(self, on_status=None):
        calls.append(sorted(getattr(self.transformer, "peft_config", None) or {}))
        original(self, on_status)

    monkeypatch.setattr(Backbone, "apply_offload", recording)
    return calls


def test_weights_attach_to_a_matching_backbone_before_the_models_are_placed(tmp_path, offloads):
    folder, statuses = save_wide_tiny_weights(tmp_path / "w"), []
    offloads.clear()  # building the weights placed a backbone of its own
    stack = load_generation_stack(TINY, folder, (64, 128), mode="branch", on_status=statuses.append)
    assert offloads == [["memory"]], "the LoRA must be on the transformer when offloading is applied"
    assert stack.branch is not None and stack.branch.config.layers == (0, 2)
    assert stack.backbone.transformer.config.num_attention_heads == 4, "tiny sizes come from the weights"
    loading, placing = f"Loading memory weights from {folder}…", "Placing models on cpu (offload none)…"
    assert statuses.index(loading) < statuses.index(placing)


def test_without_weights_the_stock_backbone_is_placed_and_no_branch_returned(offloads):
    backbone, branch = load_generation_stack(TINY, "", (176, 320))
    assert branch is None and offloads == [[]] and backbone.config == TINY


def test_branch_mode_without_weights_is_refused_before_anything_loads(monkeypatch):
    monkeypatch.setattr(
        model.generation.stack, "load_backbone", lambda *args, **kwargs: pytest.fail("loaded a backbone")
    )
    for weights in (None, ""):
        with pytest.raises(ValueError, match=r"mode 'branch' needs trained memory weights \(--memory-weights DIR"):
            load_generation_stack(TINY, weights, mode="branch")


def test_a_frame_size_the_backbone_cannot_take_is_refused_before_offloading(offloads):
    with pytest.raises(ValueError, match=r"\(--height/--width\): 128x60 pixels must be multiples of 8 for the tiny"):
        load_generation_stack(TINY, frame_hw=(60, 128))
    assert offloads == []


def test_attach_before_offload_places_the_models_once_the_block_ends(offloads):
    with attach_before_offload(TINY) as backbone:
        add_lora(backbone.transformer, LoraSettings(rank=2, alpha=2, dropout=0.0))
        assert offloads == []
    assert offloads == [["memory"]]
    with pytest.raises(RuntimeError, match="attaching failed"), attach_before_offload(TINY):
        raise RuntimeError("attaching failed")
    assert len(offloads) == 1, "a failed block places nothing"
