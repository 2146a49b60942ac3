"""Training of the memory branch (stage 1) and the backbone LoRA (stage 2), Mirage paper §4.

Modules:

* :mod:`model.training.clips`: RealEstate10K-layout clip folders and procedural clips;
* :mod:`model.training.samples`: per-clip latent / depth cache and memory-readout samples;
* :mod:`model.training.flow`: the flow-matching objective (per-frame sigma, clean context);
* :mod:`model.training.checkpoint`: checkpoints for exact resume (safetensors + JSON);
* :mod:`model.training.losslog`: ``loss.csv`` and ``loss.png``;
* :mod:`model.training.trainer`: :class:`~model.training.trainer.TrainConfig`, the loop,
  :func:`~model.training.trainer.train`.
"""
