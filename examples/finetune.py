"""Supervised fine-tuning of the Thinker on a JSONL file of conversations (text, images, audio, video).

    python examples/finetune.py --data train.jsonl --out runs/sft                   # tiny random model (a dry run)
    python examples/finetune.py --data train.jsonl --out runs/sft --model ./Qwen3-Omni-30B-A3B-Instruct \
        --dtype bfloat16 --lora 16 --freeze vision audio --gradient-checkpointing
    python examples/finetune.py ... --resume                                          # continue from runs/sft/last
    torchrun --nproc_per_node 8 examples/finetune.py ... --fsdp                       # one process per GPU

The data format is described in omni/training/data.py (one conversation per line, media paths relative to the
file). Labels cover the assistant replies only; the loss is the LM loss plus the router aux loss.

Checkpoints: every --save-every steps `OUT/last/` receives the full training state (weights, optimizer moments,
step) through torch.distributed.checkpoint, which works unchanged for one process or a sharded FSDP run; --resume
continues from it exactly (same data order, same optimizer state). At the end the model goes to `OUT/final/` in
the official layout (merged with the LoRA adapters when --lora is used; the adapters alone go to OUT/adapter/),
loadable with omni.load.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import warnings

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

import omni
from omni.training import trainable_parameters
from omni.training.data import Collator, read_conversations
from omni.training.distributed import full_state_dict, init_distributed, shard_model

warnings.filterwarnings("ignore", message="Detected an existing checkpoint")  # OUT/last is overwritten on purpose
warnings.filterwarnings("ignore", message="torch.distributed is disabled")  # a single process is fine for DCP


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Supervised fine-tuning of the omni Thinker on JSONL conversations")
    p.add_argument("--data", required=True, help="JSONL file, one conversation per line")
    p.add_argument("--out", required=True, help="output directory (checkpoints, final model)")
    p.add_argument("--model", default=None, help="checkpoint dir or hub id; default: a tiny random model")
    p.add_argument("--dtype", default=None, help="float32 / bfloat16 (default: as stored)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=4, help="conversations per step and process")
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--lora", type=int, default=0, help="LoRA rank (0: full fine-tuning)")
    p.add_argument("--freeze", nargs="*", default=[], help="components to freeze, e.g. vision audio")
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--fsdp", action="store_true", help="shard with FSDP2 (launch with torchrun)")
    p.add_argument("--save-every", type=int, default=100)
    p.add_argument("--resume", action="store_true", help="continue from OUT/last")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def load_model(args, device):
    if args.model is None:  # a tiny random model with its tokenizer, written once into OUT/base
        from omni.demo import build_tiny_checkpoint

        base = os.path.join(args.out, "base")
        if not os.path.isfile(os.path.join(base, "config.json")):
            build_tiny_checkpoint(base, seed=args.seed)
        args.model = base
    model = omni.load(args.model, components=("thinker",), dtype=args.dtype, device=device, quiet=True)
    processor = model.processor or omni.Processor.from_pretrained(args.model)
    return model, processor


def batches(conversations, batch_size: int, seed: int, epoch: int):
    """The epoch's batches in a fixed shuffled order (reproducible, so a resumed run sees the same batches)."""
    order = list(range(len(conversations)))
    random.Random(seed * 1000 + epoch).shuffle(order)
    for i in range(0, len(order) - batch_size + 1, batch_size):
        yield [conversations[j] for j in order[i : i + batch_size]]


def materialize_optimizer_state(model, opt) -> None:
    """Create the optimizer state of every trainable parameter now, as if no step had been taken.

    Every checkpoint then holds the same keys, also for parameters no batch has reached yet (an image encoder on
    a text-only stretch of data), which torch.distributed.checkpoint needs to load it back. The helper takes a
    zero-gradient step with lr 0; resetting the step counters makes the state identical to a fresh one."""
    get_state_dict(model, opt)
    for state in opt.state.values():
        if torch.is_tensor(state.get("step")):
            state["step"].zero_()
        elif "step" in state:
            state["step"] = 0


def main(argv=None) -> dict:
    args = parse_args(argv)
    rank, world, device = init_distributed() if args.fsdp else (0, 1, torch.device("cpu"))
    if not args.fsdp and torch.cuda.is_available():
        device = torch.device("cuda")
    torch.manual_seed(args.seed)
    model, processor = load_model(args, device)
    peft_model = None
    if args.freeze:
        model.freeze(*args.freeze)
    if args.lora:
        from omni.training.lora import add_lora

        peft_model = add_lora(model, r=args.lora, alpha=2 * args.lora)
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    if args.fsdp:
        shard_model(model)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)  # after sharding (DTensors)
    materialize_optimizer_state(model, opt)

    data = read_conversations(args.data)
    shard = data[rank::world]  # each process trains on its own slice
    collate = Collator(processor)
    per_epoch = len(shard) // args.batch_size // args.grad_accum
    if per_epoch == 0:
        raise SystemExit(f"{args.data}: {len(shard)} conversations per process is less than one step "
                         f"({args.batch_size} x {args.grad_accum})")
    total = per_epoch * args.epochs if args.max_steps is None else args.max_steps

    step, last = 0, os.path.join(args.out, "last")
    if args.resume:
        state = {"step": 0}
        state["model"], state["optim"] = get_state_dict(model, opt)
        dcp.load(state, checkpoint_id=last, no_dist=not args.fsdp)
        set_state_dict(model, opt, model_state_dict=state["model"], optim_state_dict=state["optim"])
        step = int(state["step"])

    def save_training_state():
        model_state, optim_state = get_state_dict(model, opt)
        dcp.save({"model": model_state, "optim": optim_state, "step": step}, no_dist=not args.fsdp,
                 storage_writer=dcp.FileSystemWriter(last, overwrite=True))

    trainable, count = trainable_parameters(model)
    if rank == 0:
        print(f"{len(data)} conversations, {world} process(es), {per_epoch} steps/epoch, training "
              f"{trainable:,} of {count:,} parameters", flush=True)
    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=step, disable=args.no_progress or rank != 0, desc="fine-tuning")
    losses = []
    while step < total:
        epoch, skip = divmod(step, per_epoch)
        micro = list(batches(shard, args.batch_size, args.seed, epoch))[skip * args.grad_accum:]
        for i in range(0, len(micro) - args.grad_accum + 1, args.grad_accum):
            for group in opt.param_groups:
                group["lr"] = args.lr * min(1.0, (step + 1) / args.warmup)
            opt.zero_grad(set_to_none=True)
            running = 0.0
            for conversations in micro[i : i + args.grad_accum]:
                batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in collate(conversations).items()}
                loss = model.thinker(**batch, output_router_logits=True).loss / args.grad_accum
                loss.backward()
                running += loss.item()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            step += 1
            losses.append(running)
            bar.update(1)
            bar.set_postfix(loss=f"{running:.4f}")
            if step % args.save_every == 0 or step == total:
                save_training_state()
            if step >= total:
                break
    bar.close()

    final = os.path.join(args.out, "final")
    weights = full_state_dict(model) if args.fsdp else None  # collective: every rank takes part
    if rank == 0:
        if peft_model is not None:
            from omni.training.lora import merge_lora, save_adapter

            if args.fsdp:
                raise SystemExit("merging LoRA after an FSDP run: reload OUT/last on one process and merge there")
            save_adapter(peft_model, os.path.join(args.out, "adapter"))
            model = merge_lora(peft_model)
        if weights is not None:  # an unsharded copy to write the official layout
            with torch.device("meta"):
                plain = omni.OmniModel(model.config, components=("thinker",))
            plain.load_state_dict(weights, assign=True)
            model = plain
        omni.save(model, final)
        processor.tokenizer.save_pretrained(final)
        print(f"final model (official layout): {final}; last loss {losses[-1] if losses else float('nan'):.4f}")
    if args.fsdp:
        torch.distributed.destroy_process_group()
    return {"losses": losses, "step": step, "final": final}


if __name__ == "__main__":
    main()
    sys.exit(0)
