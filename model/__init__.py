"""Everything numerical for Mirage Explorer: camera geometry, the latent spatial memory, backbones,
the memory branch, LoRA, depth, masks, the segment pipeline, metrics and training.

This package never imports Qt.
"""
