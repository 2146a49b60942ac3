"""Run by ``accelerate launch`` from ``test_training_multiprocess.py`` (not a test module itself).

Builds the :class:`~model.training.trainer.Trainer` of a tiny stage-1 run (:data:`CONFIG`), takes
``STEPS`` steps as :meth:`Trainer.run` does, and after each step gathers every process's trainable
parameters; the main process writes ``OUT/ranks.json``: per step, the loss and the largest absolute
difference of any parameter between two processes. Then it writes the checkpoint of step ``STEPS``
and continues the run to ``TOTAL`` steps through ``main.py train --resume OUT`` (in the same
processes, so the test pays for one launch).

Usage: ``accelerate launch ... ddp_worker.py OUT STEPS TOTAL``
"""

import json
import sys
from pathlib import Path

import torch

import main as entry_point
from model.training.trainer import TrainConfig, Trainer, trainable_parameters

#: The run's settings; the test passes the same ones to ``main.py train`` (chunk 33, stride 32: the defaults).
CONFIG = dict(stage="branch", procedural_scenes=2, height=32, width=32, branch_layers=(0, 2), lr=1e-3, device="cpu")


#: ``main.py train`` flags of :data:`CONFIG`.
FLAGS = [
    *("--stage branch --data procedural --backend tiny --device cpu --scenes 2 --height 32 --width 32").split(),
    *("--branch-layers 0,2 --lr 1e-3").split(),
]


def main(out: str, steps: int, total: int) -> None:
    torch.set_num_threads(1)
    trainer = Trainer(TrainConfig(out=out, steps=steps, **CONFIG), on_status=lambda message: None)
    acc, rows = trainer.accelerator, []
    try:
        for step in range(steps):
            loss = trainer.train_step(trainer.batch(step), trainer.noise(step))
            trainer.step = step + 1
            trainer.log.append(trainer.step, loss, trainer.config.learning_rate)
            flat = torch.cat([p.detach().flatten() for p in trainable_parameters(trainer.model).values()])
            every = acc.gather(flat[None])  # [processes, parameters]
            rows.append({"step": step + 1, "loss": loss, "max_rank_difference": float((every - every[0]).abs().max())})
        if acc.is_main_process:
            Path(out, "ranks.json").write_text(json.dumps({"processes": acc.num_processes, "steps": rows}))
        trainer.save_checkpoint()
    finally:
        trainer.close()
    code = entry_point.main(["train", *FLAGS, "--steps", str(total), "--out", out, "--resume", out])
    sys.exit(code)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
