"""Speech-side training: the Talker's and code predictor's losses against the reference (values and gradients),
and the teacher-forced training pass against generation (the same inputs, the same logits).

Reference losses: the Qwen3-Omni Talker takes `labels` (transformers 5.23 needs `talker_config.vocab_size` set for
it) (ForCausalLM loss on the codec head + router aux loss);
its code predictor, given a prefix of length k + 1, applies head k - 1 to every position, so its loss for code k
is read with `shift_labels` that score only the last position. The Qwen2.5-Omni Talker takes no labels in
transformers; its loss is the reference's ForCausalLMLoss applied to the reference's logits.
"""

from __future__ import annotations

import pytest
import torch

import omni
from omni.errors import InputError
from omni.training import speech_loss

from test_talker import IM_END, _build, _prompt

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def qwen3(tmp_path_factory):
    directory = tmp_path_factory.mktemp("speech_training")
    ref = _build(directory)
    return ref, omni.load(directory, components=("thinker", "talker"), quiet=True)


def _grads(named, names):
    return {n: p.grad.detach().clone() for n, p in named if n in names}


def test_talker_loss_and_gradients_match_reference(qwen3):
    ref, model = qwen3
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 9, 24, generator=g)
    mask = torch.ones(2, 9, dtype=torch.long)
    mask[1, :3] = 0  # left padding, as the Talker's prompt has it
    pos = torch.arange(9).expand(3, 2, 9).clone()
    pos[1, :, 4:] += 2
    labels = torch.randint(0, 32, (2, 9), generator=g)
    # a label is scored by the logits one position earlier: none may sit on (or right after) padding, whose
    # outputs are arbitrary in both implementations
    labels[1, :4] = -100
    ref.talker.zero_grad()
    model.talker.zero_grad()
    # transformers 5.23's Talker reads `config.vocab_size` for its loss, which its talker config lacks (the
    # vocabulary is text_config.vocab_size): give it the attribute so that its own loss can run
    ref.talker.config.vocab_size = ref.talker.config.text_config.vocab_size
    want = ref.talker(inputs_embeds=x, position_ids=pos, attention_mask=mask, labels=labels, use_cache=False,
                      output_router_logits=True)
    got = model.talker(x, pos, mask, labels=labels, output_router_logits=True)
    assert abs(want.loss.item() - got.loss.item()) <= 1e-5
    assert abs(want.aux_loss.item() - got.aux_loss.item()) <= 1e-5
    want.loss.backward()
    got.loss.backward()
    pairs = {  # reference name -> omni name
        "codec_head.weight": "codec_head.weight",
        "model.layers.0.self_attn.q_proj.weight": "decoder.layers.0.attn.q_proj.weight",
        "model.layers.1.mlp.gate.weight": "decoder.layers.1.ffn.router.weight",
        "model.layers.1.mlp.experts.down_proj": "decoder.layers.1.ffn.experts.down_proj",
    }
    ours = dict(model.talker.named_parameters())
    for ref_name, p in ref.talker.named_parameters():
        if ref_name in pairs:
            diff = (p.grad - ours[pairs[ref_name]].grad).abs().max().item()
            assert diff <= 1e-5, (ref_name, diff)


def test_code_predictor_loss_and_gradients_match_reference(qwen3):
    ref, model = qwen3
    cp_ref, talker = ref.talker.code_predictor, model.talker
    G = model.config.talker_config.num_code_groups
    g = torch.Generator().manual_seed(2)
    hidden = torch.randn(3, 24, generator=g)
    codes = torch.randint(0, 32, (3, G), generator=g)
    code0 = talker.codec_embedding(codes[:, 0]).detach()
    cp_ref.zero_grad()
    talker.code_predictor.zero_grad()
    # reference: one call per code k over the prefix [hidden, code 0 .. code k-1], the last position scored
    x = torch.stack([hidden, code0] + [cp_ref.get_input_embeddings()[k - 1](codes[:, k]) for k in range(1, G - 1)], 1)
    losses = []
    for k in range(1, G):
        shift = torch.full((3, k + 1), -100)
        shift[:, k] = codes[:, k]
        losses.append(cp_ref(inputs_embeds=x[:, :k + 1], labels=shift, shift_labels=shift, use_cache=False).loss)
    want = torch.stack(losses).mean()  # the same number of frames per code: the mean over every (frame, k)
    got = talker.code_predictor.loss(hidden, code0, codes)
    assert abs(want.item() - got.item()) <= 1e-5
    want.backward()
    got.backward()
    ours = dict(talker.code_predictor.named_parameters())
    pairs = {"lm_head.1.weight": "lm_heads.1.weight", "model.codec_embedding.0.weight": "codec_embedding.0.weight",
             "model.layers.0.mlp.up_proj.weight": "decoder.layers.0.ffn.up_proj.weight"}
    for ref_name, p in cp_ref.named_parameters():
        if ref_name in pairs:
            diff = (p.grad - ours[pairs[ref_name]].grad).abs().max().item()
            assert diff <= 1e-5, (ref_name, diff)


def _spoken(model, ids, frames=6):
    """Greedy reply + greedy frames, recording the Talker's code-0 logits at every decode step."""
    from omni.models.qwen3_omni.speech import speak

    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    reply = model.generate(batch, max_new_tokens=6, eos_token_ids=(IM_END,))
    seen, forward = [], model.talker.forward

    def record(*a, **k):
        out = forward(*a, **k)
        seen.append(out.logits[:, -1].detach())
        return out

    model.talker.forward = record
    try:
        codes = speak(model, batch, reply, thinker_eos_token_ids=(IM_END,), do_sample=False, max_frames=frames)
    finally:
        del model.talker.forward
    return batch, reply, codes, torch.stack(seen, 1)


def test_teacher_forced_pass_equals_generation(qwen3):
    """The training pass builds the inputs generation builds: its code-0 logits equal the decode steps' logits."""
    _, model = qwen3
    ids = torch.tensor([_prompt()])
    batch, reply, codes, step_logits = _spoken(model, ids, frames=7)
    n = int(codes.lengths[0])
    assert n >= 2
    captured = {}
    forward = model.talker.forward

    def record(*a, **k):
        out = forward(*a, **k)
        captured["logits"], captured["hidden"] = out.logits, out.hidden
        return out

    model.talker.forward = record
    try:
        loss = speech_loss(model, batch, reply, codes.codes[:, :, :n], thinker_eos_token_ids=(IM_END,))
    finally:
        del model.talker.forward
    T = captured["logits"].shape[1] - n
    forced = captured["logits"][:, T - 1:]
    steps = min(forced.shape[1], step_logits.shape[1])
    assert (forced[:, :steps] - step_logits[:, :steps]).abs().max().item() <= 1e-4
    assert torch.isfinite(loss.loss) and loss.code_predictor is not None and loss.aux is not None
    assert loss.loss.requires_grad
    # greedy decoding chose the argmax of the code predictor's logits: the teacher-forced pass picks the same codes
    with torch.no_grad():
        frames = codes.codes[0, :, :n].T  # (n, G)
        hidden = captured["hidden"][0, T - 1:T - 1 + n]
        logits = model.talker.code_predictor.frame_logits(hidden, model.talker.codec_embedding(frames[:, 0]), frames)
    assert torch.equal(logits.argmax(-1), frames[:, 1:])


def test_speech_loss_checks_its_inputs(qwen3):
    _, model = qwen3
    ids = torch.tensor([_prompt()])
    batch = {"input_ids": ids}
    reply = torch.tensor([[40, 41, 42, IM_END]])
    G = model.config.talker_config.num_code_groups
    good = torch.zeros(1, G, 6, dtype=torch.long)
    cases = [
        (dict(codes=torch.zeros(1, G - 1, 6, dtype=torch.long)), "groups"),
        (dict(codes=good.clone().index_fill_(2, torch.tensor([1]), 40)), "code 0"),
        (dict(codes=good + 5000), "code 0"),
        (dict(codes=good.float()), "integer"),
        (dict(codes=good[:, :, :2]), "shorter than the reply"),
        (dict(codes=good, lengths=[0]), "lengths"),
        (dict(codes=good, lengths=[7]), "lengths"),
        (dict(codes=torch.zeros(2, G, 6, dtype=torch.long)), "rows"),
        (dict(codes=good, reply=torch.tensor([[40]])), "reply"),
        (dict(codes=good, voice="nobody"), "unknown voice"),
    ]
    for kwargs, message in cases:
        kwargs = {"reply": reply, **kwargs}
        with pytest.raises(InputError, match=message):
            speech_loss(model, batch, thinker_eos_token_ids=(IM_END,), **kwargs)


# -- Qwen2.5-Omni --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def qwen25(tmp_path_factory):
    from omni.models.qwen2_5_omni.token2wav import save_speakers
    from test_talker_qwen2_5 import build_pair

    directory = tmp_path_factory.mktemp("speech_training_q25")
    ref, _, _ = build_pair()
    ref.save_pretrained(directory)
    save_speakers(ref.speaker_map, directory / "spk_dict.safetensors")
    return ref, omni.load(directory, components=("thinker", "talker"), quiet=True)


def test_qwen25_talker_loss_and_gradients_match_reference(qwen25):
    from transformers.loss.loss_utils import ForCausalLMLoss

    ref, model = qwen25
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 8, 48, generator=g)
    mask = torch.ones(2, 8, dtype=torch.long)
    mask[0, :2] = 0
    pos = torch.arange(8).expand(3, 2, 8).clone()
    pos[2, :, 3:] += 1
    labels = torch.randint(0, 60, (2, 8), generator=g)
    labels[0, :3] = -100  # nothing scored on or right after padding
    ref.talker.zero_grad()
    model.talker.zero_grad()
    logits = ref.talker(inputs_embeds=x, position_ids=pos, attention_mask=mask, use_cache=False).logits
    want = ForCausalLMLoss(logits, labels, vocab_size=logits.shape[-1])
    got = model.talker(x, pos, mask, labels=labels).loss
    assert abs(want.item() - got.item()) <= 1e-5
    want.backward()
    got.backward()
    ours = dict(model.talker.named_parameters())
    pairs = {"codec_head.weight": "codec_head.weight", "thinker_to_talker_proj.weight": "thinker_to_talker_proj.weight",
             "model.layers.1.self_attn.k_proj.weight": "decoder.layers.1.attn.k_proj.weight"}
    for ref_name, p in ref.talker.named_parameters():
        if ref_name in pairs:
            diff = (p.grad - ours[pairs[ref_name]].grad).abs().max().item()
            assert diff <= 1e-5, (ref_name, diff)


def test_qwen25_teacher_forced_pass_equals_generation(qwen25):
    from omni.models.qwen2_5_omni.speech import speak

    _, model = qwen25
    g = torch.Generator().manual_seed(6)
    ids = torch.randint(0, 190, (2, 7), generator=g)
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    batch = {"input_ids": ids, "attention_mask": mask}
    reply = model.generate(batch, max_new_tokens=5, eos_token_ids=(118,), pad_token_id=118)
    seen, forward = [], model.talker.forward

    def record(*a, **k):
        out = forward(*a, **k)
        seen.append(out.logits.detach().clone())  # generation edits the last logits in place
        return out

    model.talker.forward = record
    try:
        codes = speak(model, batch, reply, voice="chelsie", do_sample=False, max_new_tokens=12)
        step_logits = torch.cat([s[:, -1:] for s in seen], 1).detach()
        seen.clear()
        n = int(codes.lengths.min())
        lengths = codes.lengths.clamp_max(codes.codes.shape[1]).clamp_min(1)
        loss = speech_loss(model, batch, reply, codes.codes, lengths, voice="chelsie", thinker_eos_token_ids=())
    finally:
        del model.talker.forward
    forced = seen[0][:, -codes.codes.shape[1] - 1:]
    assert n >= 1 and torch.isfinite(loss.loss) and loss.code_predictor is None
    for row, length in enumerate(codes.lengths.tolist()):  # every step a row really decoded
        steps = min(length + 1, step_logits.shape[1])
        diff = (forced[row, :steps] - step_logits[row, :steps]).abs().max().item()
        assert diff <= 1e-4, (row, diff)


# -- training options: LoRA, gradient checkpointing, the Thinker jointly ---------------------------------------------


def _toy_example(model):
    ids = torch.tensor([_prompt()])
    reply = torch.tensor([[40, 41, 42, IM_END]])
    G = model.config.talker_config.num_code_groups
    codes = torch.randint(0, 32, (1, G, 5), generator=torch.Generator().manual_seed(9))
    return {"input_ids": ids}, reply, codes


def test_gradient_checkpointing_and_joint_thinker_training(tmp_path, monkeypatch):
    import torch.utils.checkpoint

    from omni.training import set_gradient_checkpointing

    _build(tmp_path)
    model = omni.load(tmp_path, components=("thinker", "talker"), quiet=True)
    batch, reply, codes = _toy_example(model)
    loss = speech_loss(model, batch, reply, codes, thinker_eos_token_ids=(IM_END,))
    loss.loss.backward()
    plain = {n: p.grad.clone() for n, p in model.talker.named_parameters() if p.grad is not None}
    assert all(p.grad is None for p in model.thinker.parameters())  # the Thinker only re-reads (no graph)
    assert "decoder.layers.0.attn.q_proj.weight" in plain and "code_predictor.lm_heads.0.weight" in plain
    model.zero_grad(set_to_none=True)
    assert set_gradient_checkpointing(model) >= 3  # Thinker, Talker and code predictor decoders (+ encoders)
    model.train()  # checkpointing applies while training
    calls, checkpoint = [], torch.utils.checkpoint.checkpoint
    monkeypatch.setattr(torch.utils.checkpoint, "checkpoint", lambda *a, **k: calls.append(1) or checkpoint(*a, **k))
    again = speech_loss(model, batch, reply, codes, thinker_eos_token_ids=(IM_END,))
    again.loss.backward()
    assert abs(again.loss.item() - loss.loss.item()) <= 1e-6
    talker_layers = len(model.talker.decoder.layers) + len(model.talker.code_predictor.decoder.layers)
    assert len(calls) >= talker_layers  # the speech side's blocks ran checkpointed
    for name, grad in plain.items():
        assert torch.allclose(dict(model.talker.named_parameters())[name].grad, grad, atol=1e-6), name
    model.zero_grad(set_to_none=True)
    joint = speech_loss(model, batch, reply, codes, thinker_eos_token_ids=(IM_END,), train_thinker=True)
    joint.loss.backward()
    # a text-only prompt reaches the Qwen3 Talker through the Thinker's token embeddings (its hidden states only at
    # media placeholders): that is where the joint gradient lands
    assert model.thinker.embed_tokens.weight.grad.abs().sum() > 0


def test_lora_on_the_talker_trains_only_adapters_and_merges(tmp_path):
    pytest.importorskip("peft")
    from omni.training.lora import add_lora, lora_targets, merge_lora

    _build(tmp_path)
    model = omni.load(tmp_path, components=("thinker", "talker"), quiet=True)
    modules, params = lora_targets(model, scope="talker")
    assert any(m.startswith("talker.code_predictor.decoder.") for m in modules)
    assert any(m.startswith("talker.decoder.") for m in modules) and params  # expert stacks too
    assert not any(m.startswith("thinker.") for m in modules)
    batch, reply, codes = _toy_example(model)
    peft_model = add_lora(model, r=4, alpha=8, scope="talker")
    adapters = [p for n, p in model.named_parameters() if p.requires_grad]
    assert adapters and all("lora_" in n for n, p in model.named_parameters() if p.requires_grad)
    opt = torch.optim.SGD(adapters, lr=0.5)
    for _ in range(2):
        opt.zero_grad()
        speech_loss(model, batch, reply, codes, thinker_eos_token_ids=(IM_END,)).loss.backward()
        opt.step()
    with torch.no_grad():
        adapted = speech_loss(model, batch, reply, codes, thinker_eos_token_ids=(IM_END,)).loss
    merged = merge_lora(peft_model)
    with torch.no_grad():
        assert abs(speech_loss(merged, batch, reply, codes, thinker_eos_token_ids=(IM_END,)).loss - adapted) < 1e-4


def test_speech_loss_input_errors_qwen25_and_missing_parts(qwen25, qwen3, tmp_path):
    ref, model = qwen25
    batch = {"input_ids": torch.randint(0, 190, (1, 7), generator=torch.Generator().manual_seed(1))}
    reply = torch.tensor([[5, 6, 7]])
    for codes, message in [(torch.zeros(1, 2, 4, dtype=torch.long), "one codebook"),
                           (torch.tensor([[1, 2, 60, 3]]), "control ids"),
                           (torch.tensor([[1, 2, 64, 3]]), "0..63")]:
        with pytest.raises(InputError, match=message):
            speech_loss(model, batch, reply, codes, voice="chelsie", thinker_eos_token_ids=())
    with pytest.raises(InputError, match="unknown voice"):
        speech_loss(model, batch, reply, torch.tensor([[1, 2, 3, 4]]), voice="ethan", thinker_eos_token_ids=())
    directory = tmp_path / "thinker_only"
    omni.save(qwen3[1], directory)
    thinker_only = omni.load(directory, components=("thinker",), quiet=True)
    with pytest.raises(InputError, match="without \\['talker'\\]"):
        speech_loss(thinker_only, {"input_ids": torch.tensor([_prompt()])}, torch.tensor([[40, 41, IM_END]]),
                    torch.zeros(1, 16, 4, dtype=torch.long))
