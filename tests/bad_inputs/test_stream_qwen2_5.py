"""Bad Qwen2.5-Omni streaming requests (Token2Wav's chunked decoder): chunk options out of range, a stream used
after it finished, codes of the wrong layout. Each is an InputError naming the option and its range, raised before
the DiT runs; the decoder still streams correctly afterwards."""

from __future__ import annotations

import pytest
import torch

from omni.errors import InputError
from omni.models.qwen2_5_omni.token2wav import Token2Wav, Token2WavConfig

from test_token2wav import BIGVGAN, DIT, _randomise

VOICE = dict(conditioning=torch.ones(DIT["enc_emb_dim"]), reference_mel=torch.zeros(20, DIT["mel_dim"]))


@pytest.fixture(scope="module")
def token2wav():
    return _randomise(Token2Wav(Token2WavConfig.from_dict({"dit_config": DIT, "bigvgan_config": BIGVGAN})), 0)


def _finished(t2w):
    stream = t2w.streamer(**VOICE)
    stream.finish()
    return stream


CASES = [  # (id, callable(token2wav), message fragments)
    ("no chunk", lambda t: t.streamer(chunk_blocks=0, **VOICE), ["chunk_blocks must be an integer in [1, 64]", "0"]),
    ("negative past", lambda t: t.streamer(past_blocks=-2, **VOICE), ["past_blocks must be an integer in [0, 64]"]),
    ("fractional future", lambda t: t.streamer(future_blocks=0.5, **VOICE), ["future_blocks must be"]),
    ("boolean context", lambda t: t.streamer(vocoder_context=True, **VOICE), ["vocoder_context must be"]),
    ("huge context", lambda t: t.streamer(vocoder_context=10**9, **VOICE), ["[0, 1000]", "mel frames"]),
    ("window past the positions", lambda t: t.streamer(chunk_blocks=60, past_blocks=4, future_blocks=1, **VOICE),
     ["exceed the DiT's max_position_embeddings", "65 blocks"]),
    ("1-D codes", lambda t: t.streamer(**VOICE).push(torch.zeros(4, dtype=torch.long)), ["push codes as a (1, n)"]),
    ("float codes", lambda t: t.streamer(**VOICE).push(torch.zeros(1, 4)), ["codes must be integer ids"]),
    ("push after finish", lambda t: _finished(t).push(torch.zeros(1, 4, dtype=torch.long)), ["stream is finished"]),
    ("finish twice", lambda t: _finished(t).finish(), ["already finished"]),
    ("no voice", lambda t: t.streamer(), ["give a speaker preset"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_stream_request(token2wav, case):
    _, call, fragments = case
    with pytest.raises(InputError) as e:
        call(token2wav)
    for fragment in fragments:
        assert fragment in str(e.value), (fragment, str(e.value))
    codes = torch.arange(9)[None] % DIT["num_embeds"]  # still healthy: a short reply streams as the whole decode
    noise = torch.randn(1, 18, DIT["mel_dim"], generator=torch.Generator().manual_seed(0))
    want = token2wav(codes, noise=noise, num_steps=2, **VOICE)
    got = torch.cat(list(token2wav.stream_decode(codes, noise=noise, num_steps=2, **VOICE)), -1)
    assert got.shape == want.shape and (got - want).abs().max() < 1e-4
