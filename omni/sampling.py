"""Choosing the next token from logits: the options (`SamplingConfig`, checked at the boundary) and the rules
(repetition penalty, top-k, top-p, temperature), shared by the Thinker's text and both releases' Talkers.

    logits (B, V) -> repetition penalty over the ids seen -> min_new_tokens (end ids forbidden) ->
        greedy: argmax     sampling: / temperature -> top-k -> top-p -> softmax -> multinomial
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import torch

from .checks import boolean, integer, number
from .errors import InputError


@dataclass
class SamplingConfig:
    max_new_tokens: int = 128
    min_new_tokens: int = 0
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0  # 0: no top-k filter
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    eos_token_ids: tuple[int, ...] = ()
    pad_token_id: int = 0
    stop_strings: tuple[str, ...] = ()
    seed: int | None = None
    # decode steps through one torch.compile(fullgraph=True) graph (omni.nn.kv_cache.static_decode_step); True
    # means the inductor backend, a string names another. The prompt (prefill) always runs eagerly.
    compile: bool | str = False

    def validate(self) -> "SamplingConfig":
        """Check every option's type and range (numpy scalars are taken as the numbers they are); the normalised
        values replace the given ones."""
        self.max_new_tokens = integer("max_new_tokens", self.max_new_tokens, 0, what="a non-negative integer")
        self.min_new_tokens = integer("min_new_tokens", self.min_new_tokens, 0, self.max_new_tokens,
                                      what="in 0..max_new_tokens")
        self.do_sample = boolean("do_sample", self.do_sample)
        # float32 logits are divided by it: below 1e-5 sampling is greedy already and the quotient overflows, past
        # 1e6 the distribution is uniform already and the divisor rounds to infinity
        if self.do_sample:
            self.temperature = number("temperature", self.temperature, 1e-5, 1e6, what="> 0 (in [1e-5, 1e6])")
        else:  # not used by greedy decoding: any sane number is accepted (temperature=0 is a common way to ask)
            self.temperature = number("temperature", self.temperature, 0, 1e6, what=">= 0 (in [0, 1e6])")
        self.top_k = integer("top_k", self.top_k, 0, what=">= 0 (0: no top-k filter)")
        self.top_p = number("top_p", self.top_p, 0, 1, low_open=True, what="in (0, 1]")
        # logits are multiplied / divided by it in float32: outside [1e-3, 1e3] they would over- or underflow
        self.repetition_penalty = number("repetition_penalty", self.repetition_penalty, 1e-3, 1e3,
                                         what="> 0 (in [0.001, 1000]; 1.0: none)")
        eos = self.eos_token_ids
        eos = (eos,) if isinstance(eos, numbers.Integral) and not isinstance(eos, bool) else eos
        if not isinstance(eos, (list, tuple)):
            raise InputError(f"eos_token_ids must be a token id or a list of them, got {eos!r}")
        self.eos_token_ids = tuple(integer("eos_token_ids", t, 0, 2**63 - 1, what="non-negative token ids")
                                   for t in eos)
        self.pad_token_id = integer("pad_token_id", self.pad_token_id, -(2**63), 2**63 - 1)
        stops = (self.stop_strings,) if isinstance(self.stop_strings, str) else self.stop_strings
        if not isinstance(stops, (list, tuple)) or not all(isinstance(x, str) and x for x in stops):
            raise InputError(f"stop_strings must be a string or a list of non-empty strings, got {self.stop_strings!r}")
        self.stop_strings = tuple(stops)
        if self.seed is not None:
            self.seed = integer("seed", self.seed, 0, 2**64 - 1)
        if not isinstance(self.compile, bool) and not (isinstance(self.compile, str) and self.compile):
            raise InputError(f"compile must be True/False or a torch.compile backend name, got {self.compile!r}")
        if isinstance(self.compile, str):
            import torch._dynamo

            known = torch._dynamo.list_backends(exclude_tags=())
            if self.compile not in known:
                raise InputError(f"compile backend {self.compile!r} is not one torch knows; use one of {known}")
        return self


# ---------------------------------------------------------------------------------------------------------------
# Choosing the next token


def apply_repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """Make already-seen tokens less likely: divide positive logits by `penalty`, multiply negative ones."""
    if penalty == 1.0:
        return logits
    scores = logits.gather(1, seen)
    scores = torch.where(scores < 0, scores * penalty, scores / penalty)
    return logits.scatter(1, seen, scores)


def filter_top_k_top_p(logits: torch.Tensor, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Set logits outside the top-k, then outside the smallest set with probability >= top_p, to -inf."""
    if top_k and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1)  # ascending
        cum = sorted_logits.softmax(-1).cumsum(-1)
        drop = cum <= 1 - top_p
        drop[:, -1] = False  # always keep the most likely token
        logits = logits.masked_fill(drop.scatter(1, order, drop), float("-inf"))
    return logits


def next_token(logits, seen, cfg: SamplingConfig, n_generated: int, generator=None) -> torch.Tensor:
    """logits (B, V) of the last position -> token ids (B,)."""
    logits = apply_repetition_penalty(logits.float(), seen, cfg.repetition_penalty)
    if n_generated < cfg.min_new_tokens:
        producible = [t for t in cfg.eos_token_ids if t < logits.shape[-1]]  # ids past the vocabulary never come
        logits[:, producible] = float("-inf")
    if not cfg.do_sample:
        return logits.argmax(-1)
    logits = filter_top_k_top_p(logits / cfg.temperature, cfg.top_k, cfg.top_p)
    return torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(1)
