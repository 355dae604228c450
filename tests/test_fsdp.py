"""FSDP2 data parallelism: 2 CPU processes (torchrun, gloo) train the tiny Thinker (decoder layers and vision blocks
sharded) on text + image micro-batches for 3 SGD-momentum steps; their losses and the updated weights must equal one
process accumulating the same micro-batches. The same for the speech side: the Talker and its code predictor
(their decoder layers sharded, the Talker the root unit) train on `speech_loss` with the Thinker frozen.

This file is also the worker script torchrun runs (`python -m torch.distributed.run ... test_fsdp.py OUT MODE`).
"""

import os
import subprocess
import sys

import pytest
import torch

STEPS, WORLD, MICRO, SEQ = 3, 2, 2, 16


def build(mode="thinker"):
    import omni

    torch.manual_seed(0)
    parts = ("thinker",) if mode == "thinker" else ("thinker", "talker")
    model = omni.OmniModel(omni.OmniConfig.from_name("tiny"), components=parts)
    if mode == "talker":
        model.freeze("thinker")
    model.gradient_checkpointing_enable()  # sharding and recomputation must compose
    model.train()
    return model


def optimizer(model):
    """Created after sharding (fully_shard replaces the parameters with DTensor shards).

    SGD with momentum rather than Adam: the two runs sum the same gradients in a different order, and Adam divides
    each element by its own gradient scale, so an element whose gradient is ~1e-9 rounding noise in both runs
    takes a full-size step in a random direction (seen: 2e-5 apart after 3 steps). With SGD the weight difference
    is bounded by lr x the gradient difference, so the comparison checks sharding, not rounding."""
    return torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=0.01)


def micro_batch(step: int, rank: int):
    """Text plus one 64x64 image in the first row (4 tokens after the 2x2 merge), so the vision blocks train too."""
    from omni.demo import TINY_TOKEN_IDS

    media = TINY_TOKEN_IDS["media"]
    g = torch.Generator().manual_seed(1000 * step + rank)
    ids = torch.randint(0, 250, (MICRO, SEQ), generator=g)
    ids[0, 2] = media["vision_start_token_id"]
    ids[0, 3:7] = media["image_token_id"]
    mask = torch.ones_like(ids)
    mask[1, SEQ - 3:] = 0  # right padding, as training batches are padded
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, :8] = -100
    pixels = torch.randn(16, 3 * 2 * 16 * 16, generator=g)  # (patches, C * T * P * P) of a 1x4x4 grid
    return dict(input_ids=ids, attention_mask=mask, labels=labels, pixel_values=pixels,
                image_grid_thw=torch.tensor([[1, 4, 4]]))


def speech_batch(step: int, rank: int):
    """A prompt, a 4-token reply and its 16-group codes (rows of 6 and 4 frames) for `speech_loss`: the same
    every step (random codes are learnt only by repetition, and the test checks that the loss falls)."""
    from omni.demo import TINY_TOKEN_IDS

    ids = TINY_TOKEN_IDS["root"]
    start, end = ids["im_start_token_id"], ids["im_end_token_id"]
    g = torch.Generator().manual_seed(rank)
    body = torch.randint(20, 250, (MICRO, 6), generator=g)
    head = torch.tensor([start, ids["user_token_id"], 10]).expand(MICRO, -1)
    tail = torch.tensor([end, 10, start, ids["assistant_token_id"], 10]).expand(MICRO, -1)
    reply = torch.cat([torch.randint(20, 250, (MICRO, 3), generator=g), torch.full((MICRO, 1), end)], 1)
    codes = torch.randint(0, 2048, (MICRO, 16, 6), generator=g)
    return dict(batch={"input_ids": torch.cat([head, body, tail], 1)}, reply=reply, codes=codes,
                lengths=torch.tensor([6, 4]), thinker_eos_token_ids=(end,))


def loss_of(model, batch):
    if "codes" in batch:
        from omni.training import speech_loss

        return speech_loss(model, **batch).loss
    return model.thinker(**batch, output_router_logits=True).loss


def batch_of(mode, step, rank):
    return micro_batch(step, rank) if mode == "thinker" else speech_batch(step, rank)


def worker(out_path: str, mode: str) -> None:
    import torch.distributed as dist

    from omni.training.distributed import full_state_dict, init_distributed, shard_model

    rank, world, _ = init_distributed()
    model = shard_model(build(mode))
    opt = optimizer(model)
    losses = []
    for step in range(STEPS):
        opt.zero_grad()
        loss = loss_of(model, batch_of(mode, step, rank))
        loss.backward()
        opt.step()
        mean = loss.detach().clone()
        dist.all_reduce(mean)
        losses.append(mean.item() / world)
    state = full_state_dict(model)
    if rank == 0:
        torch.save({"losses": losses, "state": state}, out_path)
    dist.destroy_process_group()


def single_process(mode):
    model = build(mode)
    opt = optimizer(model)
    losses = []
    for step in range(STEPS):
        opt.zero_grad()
        total = 0.0
        for rank in range(WORLD):
            loss = loss_of(model, batch_of(mode, step, rank)) / WORLD
            loss.backward()
            total += loss.item()
        opt.step()
        losses.append(total)
    return losses, {n: p.detach() for n, p in model.named_parameters()}


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["thinker", "talker"])
def test_fsdp_two_processes_match_single_process(tmp_path, mode):
    out = tmp_path / "fsdp.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(WORLD), "--standalone",
           __file__, str(out), mode]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    got = torch.load(out, weights_only=True)
    want_losses, want_state = single_process(mode)
    for a, b in zip(got["losses"], want_losses):
        assert abs(a - b) <= 1e-5 * abs(b), (got["losses"], want_losses)
    assert want_losses[-1] < want_losses[0]  # the steps did train
    assert got["state"].keys() == want_state.keys()
    init = build(mode)
    moved = set()
    for name, want in want_state.items():
        assert (got["state"][name] - want).abs().max() <= 1e-5, name
        if not torch.equal(want, dict(init.named_parameters())[name].detach()):
            moved.add(name)
    # every parameter that took part was updated, identically (the audio tower sees no input here; the speech
    # prompts have no media, so the Talker's hidden_projection is not used, and the Thinker is frozen)
    idle = ("thinker.audio",) if mode == "thinker" else ("thinker.", "talker.hidden_projection")
    assert moved == {n for n in want_state if not n.startswith(idle)}


if __name__ == "__main__":
    worker(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "thinker")
