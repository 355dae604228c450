"""The KV cache: preallocated (decode steps never reallocate it), grows past max_len when needed, and decoding
token by token through it (MoE few-token path, grouped-head SDPA) equals one full forward, in fp32 and bf16."""

import torch

import omni
from omni.nn import Decoder, KVCache


def _decoder(dtype=torch.float32):
    cfg = omni.OmniConfig.from_name("tiny").thinker_config.text_config
    torch.manual_seed(0)
    dec = Decoder(cfg).eval().to(dtype)
    with torch.no_grad():
        for name, p in dec.named_parameters():
            if not name.endswith("norm.weight"):
                p.normal_(0, 0.1)
    return dec, cfg


def test_cache_is_preallocated_and_never_reallocated():
    dec, cfg = _decoder()
    cache = dec.new_cache(2, 12)
    ptrs = [(c.k.data_ptr(), c.v.data_ptr()) for c in cache.layers]
    x = torch.randn(2, 12, cfg.hidden_size)
    with torch.no_grad():
        dec(x[:, :5], cache=cache)
        for t in range(5, 12):
            dec(x[:, t : t + 1], cache=cache)
    assert cache.length == 12
    assert [(c.k.data_ptr(), c.v.data_ptr()) for c in cache.layers] == ptrs


def test_cache_update_returns_views_and_grows_past_max_len():
    cache = KVCache(1, 2, 4, max_len=3)
    k = torch.arange(5 * 8, dtype=torch.float).view(1, 2, 5, 4)
    k1, _ = cache.update(k[:, :, :2], k[:, :, :2])
    assert k1.data_ptr() == cache.k.data_ptr() and k1.shape == (1, 2, 2, 4)
    k2, v2 = cache.update(k[:, :, 2:], k[:, :, 2:])  # 5 > max_len 3: the buffers grow, contents kept
    assert cache.length == 5 and cache.k.shape[2] >= 5
    assert torch.equal(k2, k) and torch.equal(v2, k)
    cache.reset()
    assert cache.length == 0


def _steps_vs_full(dtype):
    dec, cfg = _decoder(dtype)
    x = torch.randn(2, 9, cfg.hidden_size, generator=torch.Generator().manual_seed(1)).to(dtype)
    mask = torch.ones(2, 9, dtype=torch.long)
    mask[1, :2] = 0  # left padding in row 1
    with torch.no_grad():
        full = dec(x, attention_mask=mask).last_hidden_state
        cache = dec.new_cache(2, 9, dtype=dtype)
        steps = [dec(x[:, :4], attention_mask=mask[:, :4], cache=cache).last_hidden_state]
        for t in range(4, 9):
            steps.append(dec(x[:, t : t + 1], attention_mask=mask[:, : t + 1], cache=cache).last_hidden_state)
    keep = mask.bool()
    return (full.float() - torch.cat(steps, 1).float())[keep].abs().max().item()


def test_decode_steps_equal_full_forward_fp32():
    assert _steps_vs_full(torch.float32) <= 1e-5


def test_decode_steps_equal_full_forward_bf16():
    # bf16: only the order of the expert sums differs between the sorted (prefill) and few-token (decode) paths
    assert _steps_vs_full(torch.bfloat16) <= 5e-2


def _static_vs_eager(dtype, steps=6):
    import torch._dynamo.testing

    from omni.nn.kv_cache import advance, static_decode_step

    dec, cfg = _decoder(dtype)
    B, P, S = 2, 4, 4 + steps
    x = torch.randn(B, S, cfg.hidden_size, generator=torch.Generator().manual_seed(3)).to(dtype)
    real = torch.ones(B, S, dtype=torch.bool)
    real[1, :2] = False  # left padding in row 1
    counter = torch._dynamo.testing.CompileCounter()
    step = torch.compile(static_decode_step, fullgraph=True, backend=counter)
    with torch.no_grad():
        eager_cache, static_cache = dec.new_cache(B, S, dtype=dtype), dec.new_cache(B, S, dtype=dtype)
        want = [dec(x[:, :P], attention_mask=real[:, :P].long(), cache=eager_cache).last_hidden_state[:, -1:]]
        dec(x[:, :P], attention_mask=real[:, :P].long(), cache=static_cache)  # prefill: the eager path
        got = [want[0]]
        for t in range(P, S):
            want.append(dec(x[:, t : t + 1], attention_mask=real[:, : t + 1].long(), cache=eager_cache).last_hidden_state)
            slots = torch.arange(S)
            key_mask = (real & (slots <= t))[:, None, None, :]  # (B, 1, 1, S)
            pos = torch.full((B, 1), t)
            got.append(step(dec, x[:, t : t + 1], pos, torch.tensor([t]), key_mask, static_cache))
            advance(static_cache, 1)
    diff = (torch.cat(want, 1).float() - torch.cat(got, 1).float())[real[:, P - 1 :]].abs().max().item()
    return diff, counter.frame_count


def test_static_decode_step_compiles_once_and_equals_eager_fp32():
    diff, graphs = _static_vs_eager(torch.float32)
    assert graphs == 1  # one graph for every position: no recompiles, no graph breaks
    assert diff <= 1e-5


def test_static_decode_step_bf16():
    diff, graphs = _static_vs_eager(torch.bfloat16)
    assert graphs == 1
    assert diff <= 5e-2  # bf16: the compiled path takes the gather MoE path (another summation order)
