"""Training inputs of the wrong shape, dtype or range: named InputErrors from the Thinker's forward, before the loss
or the decoder can fail on them (or silently compute something else)."""

from __future__ import annotations

import pytest
import torch

from omni.errors import InputError

IDS = torch.randint(0, 200, (2, 5), generator=torch.Generator().manual_seed(0))


CASES = [  # (id, forward kwargs, message fragments)
    ("labels of another shape", dict(input_ids=IDS, labels=IDS[:, :4]), ["labels must have the shape of input_ids (2, 5)"]),
    ("float labels", dict(input_ids=IDS, labels=IDS.float()), ["labels must hold integer token ids"]),
    ("labels past the vocabulary", dict(input_ids=IDS, labels=IDS + 10_000), ["labels must be token ids in 0..511"]),
    ("negative labels other than -100", dict(input_ids=IDS, labels=-IDS - 1), ["or -100 (skipped)"]),
    ("position ids of another shape", dict(input_ids=IDS, position_ids=torch.zeros(3, 2, 4)),
     ["position_ids must be (3, 2, 5) (M-RoPE) or (2, 5)"]),
    ("embeddings of another width", dict(inputs_embeds=torch.zeros(2, 5, 7)),
     ["inputs_embeds must be floating (batch, seq_len, 64)"]),
    ("integer embeddings", dict(inputs_embeds=torch.zeros(2, 5, 64, dtype=torch.long)), ["inputs_embeds must be floating"]),
    ("mask of another length", dict(input_ids=IDS, attention_mask=torch.ones(2, 6)),
     ["attention_mask must be (batch, cached + new tokens) = (2, 5)"]),
    ("ids as a list", dict(input_ids=IDS.tolist()), ["input_ids must be a torch.Tensor"]),
    ("one-dimensional ids", dict(input_ids=IDS[0]), ["input_ids must be (batch, seq_len)"]),
]


@pytest.mark.parametrize("kwargs, fragments", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_training_inputs(tiny_model, kwargs, fragments):
    with pytest.raises(InputError) as info:
        tiny_model.thinker(**kwargs)
    for fragment in fragments:
        assert fragment in str(info.value), f"{fragment!r} not in {str(info.value)!r}"
    labels = IDS.clone()
    labels[:, :2] = -100
    assert torch.isfinite(tiny_model.thinker(input_ids=IDS, labels=labels).loss)  # healthy
