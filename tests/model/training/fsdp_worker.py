"""Run by ``torchrun`` from ``test_training_multiprocess.py`` (not a test module itself): the checkpoint
helpers of :mod:`model.training.checkpoint` under real FSDP2 sharding (``fully_shard``, gloo, CPU).

accelerate runs FSDP only on GPUs, so this drives torch's ``fully_shard`` directly on a small MLP whose
first layer is frozen (like the backbone): 2 AdamW steps, then a checkpoint as the trainer writes one
(the full model state as ``Accelerator.get_state_dict`` gathers it for FSDP2, i.e.
``get_model_state_dict(full_state_dict, cpu_offload)``, and :func:`~model.training.checkpoint.optimizer_tensors`),
loaded into a second, differently initialised sharded copy (:func:`~model.training.checkpoint.load_trainable`,
:func:`~model.training.checkpoint.load_optimizer`); both then take one more step. The main process
writes ``OUT/fsdp.json``: the local and saved shapes, and whether the copy's shards and optimizer state
equal the original's before and after the extra step.

Usage: ``torchrun --nproc_per_node 2 fsdp_worker.py OUT``
"""

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.fsdp import fully_shard

from model.training import checkpoint as ckpt


def sharded_model(seed: int) -> tuple[nn.Module, torch.optim.Optimizer]:
    """The MLP, frozen first layer as from one backbone load (seed 0), trainable layers drawn with ``seed``."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 6), nn.Linear(6, 1))
    model[0].requires_grad_(False)
    torch.manual_seed(seed)
    for layer in model[1:]:
        layer.reset_parameters()
    for layer in model:
        fully_shard(layer)
    fully_shard(model)
    return model, torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)


def step(model: nn.Module, optimizer: torch.optim.Optimizer, rank: int) -> None:
    model(torch.full((3, 4), 1.0 + rank)).square().sum().backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def local(value):
    return value.to_local() if hasattr(value, "to_local") else torch.as_tensor(value)


def same(a: nn.Module, oa, b: nn.Module, ob) -> bool:
    """Each parameter shard and optimizer state tensor of ``a`` equals ``b``'s (exactly)."""
    if not len(oa.state) == len(ob.state) > 0:
        return False
    params = all(torch.equal(local(x), local(y)) for x, y in zip(a.parameters(), b.parameters(), strict=True))
    states = all(
        torch.equal(local(sa[k]), local(sb[k]))
        for sa, sb in zip(oa.state.values(), ob.state.values(), strict=True)
        for k in sa
    )
    return params and states


def main(out: str) -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.set_num_threads(1)
    model, optimizer = sharded_model(0)
    for _ in range(2):
        step(model, optimizer, rank)
    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    tensors, meta = ckpt.optimizer_tensors(model, optimizer)  # collective: every process
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    folder = Path(out)
    if rank == 0:
        ckpt.save_tensors(folder / ckpt.TRAINABLE_FILE, {name: full[name] for name in trainable})
        ckpt.save_tensors(folder / ckpt.OPTIMIZER_FILE, tensors, meta)
    dist.barrier()
    copy, copy_optimizer = sharded_model(1)
    before = same(model, optimizer, copy, copy_optimizer)
    saved, _ = ckpt.read_tensors(folder / ckpt.TRAINABLE_FILE)
    ckpt.load_trainable(copy, saved)
    ckpt.load_optimizer(copy, copy_optimizer, folder / ckpt.OPTIMIZER_FILE)
    loaded = same(model, optimizer, copy, copy_optimizer)
    step(model, optimizer, rank)
    step(copy, copy_optimizer, rank)
    result = {
        "differs_before_loading": not before,
        "equal_after_loading": loaded,
        "equal_after_a_step": same(model, optimizer, copy, copy_optimizer),
        "local_shape": list(local(model[1].weight).shape),
        "saved_shape": list(saved["1.weight"].shape),
        "saved": sorted(saved),
    }
    flags = torch.tensor([result["equal_after_loading"], result["equal_after_a_step"]], dtype=torch.int64)
    dist.all_reduce(flags, op=dist.ReduceOp.MIN)  # every process's shards must agree
    result["equal_after_loading"], result["equal_after_a_step"] = (bool(f) for f in flags)
    if rank == 0:
        (folder / "fsdp.json").write_text(json.dumps(result))
    dist.barrier()  # no rank tears gloo down while the other still has traffic in flight (SIGABRT at exit)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
