"""Data-parallel training with FSDP2 (`torch.distributed.fsdp.fully_shard`), one process per device.

    rank, world, device = init_distributed()       # from torchrun's environment; single process without it
    model = omni.OmniModel(config).to(device)       # or omni.load(...)
    shard_model(model)                               # each decoder layer / encoder block is one FSDP unit
    opt = torch.optim.AdamW(p for p in model.parameters() if p.requires_grad)
    loss = model.thinker(**local_batch, labels=labels, output_router_logits=True).loss
    loss.backward(); opt.step()                      # gradients are averaged over ranks by reduce-scatter

Sharding unit = one block. Every decoder layer (Thinker, Talker, code predictor) and every encoder block owns its
parameters as one flat shard per rank: before the block runs they are all-gathered, after it they are freed
again (`reshard_after_forward`), and in the backward the gradients are reduce-scattered. Peak parameter memory is
therefore one full block plus 1/world of everything else. The embeddings, final norm and lm_head of a component
form that component's root unit (the module whose `forward` is called: `model.thinker`, ...). Stacked expert
tensors (E, out, in) are sharded along the expert axis like any other parameter.

Parts used outside their component's `forward`: the speech side builds and scores the Talker's inputs with its
parts directly (resizing MLPs, codec embeddings, the code predictor), inside `talker.run(fn, ...)`, and reads the
Thinker's token embedding. A module lists such children in `fsdp_units` (each its own unit, gathered when called:
the Thinker's `embed_tokens`) and such methods in `fsdp_methods` (registered with `register_fsdp_forward_method`,
so calling them gathers the module's shard as its forward does: `Entry.run`, omni/nn/entry.py).

Semantics: each rank computes the loss of its own micro-batch and the gradients are averaged, so a step equals a
single process accumulating `loss_r / world` over the same micro-batches (the router aux loss is per micro-batch,
as with any data parallelism). tests/test_fsdp.py checks exactly that with 2 CPU processes on gloo.

Scaling: the same code runs on one node with N GPUs (`torchrun --nproc_per_node N`, NCCL is picked when CUDA is
available) and on many nodes (`torchrun --nnodes M --node_rank i --rdzv_endpoint host:port ...`). For very many
nodes pass a 2-D device mesh (`init_device_mesh("cuda", (replicas, shards))`) to `shard_model(model, mesh=...)`
to shard within a node and replicate across nodes (HSDP).
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn

from ..errors import InputError
from ..nn.decoder import DecoderLayer

BLOCK_LISTS = ("layers", "blocks")  # ModuleList attributes whose items are encoder/decoder blocks


def init_distributed(backend: str | None = None):
    """Join the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT in the env).

    Returns (rank, world_size, device). Without torchrun's variables: (0, 1, cuda:0 or cpu) and no group."""
    if "WORLD_SIZE" not in os.environ:
        return 0, 1, torch.device("cuda" if torch.cuda.is_available() else "cpu")
    local = int(os.environ.get("LOCAL_RANK", 0))
    if torch.cuda.is_available():
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group(backend or ("nccl" if device.type == "cuda" else "gloo"))
    return dist.get_rank(), dist.get_world_size(), device


def blocks(model: nn.Module) -> list[nn.Module]:
    """The sharding units below the roots: decoder layers, and the items of encoder `layers` / `blocks` lists."""
    found, seen = [], set()
    for module in model.modules():
        items = []
        if isinstance(module, DecoderLayer):
            items = [module]
        for name in BLOCK_LISTS:
            child = getattr(module, name, None)
            if isinstance(child, nn.ModuleList):
                items += list(child)
        for item in items:
            if id(item) not in seen:
                seen.add(id(item))
                found.append(item)
    return found


def roots(model: nn.Module) -> list[nn.Module]:
    """The component modules whose forward is called (OmniModel itself has none): thinker, talker, vocoder."""
    comps = [getattr(model, n, None) for n in getattr(model, "components", ())]
    comps = [c for c in comps if isinstance(c, nn.Module)]
    return comps or [model]


def shard_model(model: nn.Module, mesh=None, reshard_after_forward: bool = True, mp_policy=None) -> nn.Module:
    """Apply FSDP2 in place: every block, then every component root. Returns `model`.

    mesh: a DeviceMesh (default: all ranks, 1-D); mp_policy: a `MixedPrecisionPolicy` (e.g. bf16 params with fp32
    gradient reduction). Call after moving the model to its device and after freezing / adding LoRA."""
    from torch.distributed.fsdp import fully_shard

    if not dist.is_initialized():
        raise InputError("shard_model needs a process group: launch with torchrun and call init_distributed() first")
    kwargs = {"mesh": mesh, "reshard_after_forward": reshard_after_forward}
    if mp_policy is not None:
        kwargs["mp_policy"] = mp_policy
    from torch.distributed.fsdp import register_fsdp_forward_method

    units = blocks(model)
    if not units:
        raise InputError(f"{type(model).__name__} has no decoder layers or encoder blocks to shard")
    for block in units:
        fully_shard(block, **kwargs)
    points = entry_points(model)
    for owner, name in points:  # innermost first: a unit's parameters leave its parent's shard
        if isinstance(getattr(owner, name), nn.Module):
            fully_shard(getattr(owner, name), **kwargs)
    for root in roots(model):
        fully_shard(root, **kwargs)
    for owner, name in points:  # once the owner is a unit (registering on a plain module does nothing)
        if not isinstance(getattr(owner, name), nn.Module):
            register_fsdp_forward_method(owner, name)
    return model


def entry_points(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """(module, name) of every child listed in a module's `fsdp_units` and every method in its `fsdp_methods`,
    deepest modules first."""
    found = []
    for module in reversed(list(model.modules())):  # named_modules is pre-order: reversed, children come first
        found += [(module, n) for n in getattr(module, "fsdp_methods", ())]
        found += [(module, n) for n in getattr(module, "fsdp_units", ()) if getattr(module, n, None) is not None]
    return found


def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter as a full (unsharded) CPU tensor, on every rank; sharded or not. Collective: call it on
    all ranks. Load it into an unsharded copy of the model to save it with omni.save."""
    out = {}
    for name, p in model.named_parameters():
        t = p.detach()
        if hasattr(t, "full_tensor"):  # a DTensor shard
            t = t.full_tensor()
        out[name] = t.cpu()
    return out
