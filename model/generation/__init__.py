"""Generation: backend profiles, VAEs, the backbone, memory branch + LoRA, depth, the stack loader and the pipeline.

Public names are importable from here (``from model.generation import ...``); they load on first use."""

from model._exports import lazy_exports

_EXPORTS = {
    "Backbone": "backbone",
    "BackboneConfig": "backbone",
    "BackendProfile": "profiles",
    "DepthEstimator": "depth",
    "DepthSource": "depth",
    "MemoryBranch": "memory_branch",
    "MemoryBranchConfig": "memory_branch",
    "MiragePipeline": "pipeline",
    "PROFILES": "profiles",
    "PatchVAE": "patch_vae",
    "PipelineConfig": "pipeline",
    "PriorDepth": "depth",
    "VideoVAE": "vae",
    "load_backbone": "backbone",
    "load_depth_for_photo": "depth",
    "load_generation_stack": "stack",
    "load_memory_weights": "lora",
    "profile": "profiles",
    "save_memory_weights": "lora",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
