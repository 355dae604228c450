"""Matching checkpoint keys against `{}`-templated key-map tables (gpt-fast style).

A table maps an official key pattern to an omni parameter name. `{}` stands for an integer (layer, expert,
codebook) and `{*}` for any dotted tail (copied verbatim). When the official pattern has one `{}` more than the
omni name, that last index is the expert index: the per-expert tensors are stacked into one 3-D parameter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Mapped:
    name: str  # omni parameter name
    expert: int | None = None  # index into a stacked expert parameter, if any


def _compile(pattern: str) -> re.Pattern:
    rx = re.escape(pattern).replace(r"\{\}", r"(\d+)").replace(r"\{\*\}", r"(.+)")
    return re.compile(rx + "$")


def _fill(template: str, values: list[str]) -> str:
    out, it = [], iter(values)
    for part in re.split(r"(\{\}|\{\*\})", template):
        out.append(next(it) if part in ("{}", "{*}") else part)
    return "".join(out)


class KeyMap:
    """Both directions of one release's table. Official -> omni for loading, omni -> official for saving."""

    def __init__(self, table: dict[str, str]):
        self.rows = []
        for official, omni in table.items():
            n_off = official.count("{}") + official.count("{*}")
            n_omni = omni.count("{}") + omni.count("{*}")
            if n_off not in (n_omni, n_omni + 1):
                raise ValueError(f"bad key-map row {official!r} -> {omni!r}")
            self.rows.append((official, omni, _compile(official), _compile(omni), n_off == n_omni + 1))
        # literal prefixes let a lookup skip most rows cheaply
        self._by_prefix: dict[str, list] = {}
        for row in self.rows:
            self._by_prefix.setdefault(row[0].split(".", 1)[0], []).append(row)

    def to_omni(self, key: str) -> Mapped | None:
        for official, omni, rx_off, _, stacked in self._by_prefix.get(key.split(".", 1)[0], ()):
            m = rx_off.match(key)
            if m:
                groups = list(m.groups())
                if stacked:
                    return Mapped(_fill(omni, groups[:-1]), int(groups[-1]))
                return Mapped(_fill(omni, groups))
        return None

    def to_official(self, name: str, n_stacked: int = 0) -> list[str] | None:
        """Official key(s) of an omni parameter; a stacked one gives one key per expert (n_stacked of them)."""
        for official, omni, _, rx_omni, stacked in self.rows:
            m = rx_omni.match(name)
            if m:
                groups = list(m.groups())
                if stacked:
                    return [_fill(official, groups + [str(e)]) for e in range(n_stacked)]
                return [_fill(official, groups)]
        return None

    def is_stacked(self, name: str) -> bool:
        return any(stacked and rx.match(name) for _, _, _, rx, stacked in self.rows)


def under(prefixes: dict[str, str], rows: dict[str, str]) -> dict[str, str]:
    """Every row of a block's table under every (official prefix -> omni prefix) pair: one decoder-layer table
    serves the Thinker, the Talker and the code predictor."""
    return {off_prefix + off: omni_prefix + omni for off_prefix, omni_prefix in prefixes.items()
            for off, omni in rows.items()}


@dataclass(frozen=True)
class Weights:
    """What the loader needs of one release's checkpoint layout (its `weights.py` builds it)."""

    key_map: KeyMap
    components: dict  # component name -> the official key prefixes it owns (`components=` and hub shard picking)
    ignored_suffixes: tuple = ()  # keys that may be stored but carry nothing omni needs (recomputed buffers)


# The blocks every release shares, named the same way on disk and in omni; each release table puts them under its
# own prefixes (`under`). Official suffix -> omni suffix.

DECODER_LAYER = {  # one Qwen decoder layer (omni.nn.decoder.DecoderLayer)
    "input_layernorm.weight": "attn_norm.weight",
    **{f"self_attn.{p}_proj.{t}": f"attn.{p}_proj.{t}" for p in "qkvo" for t in ("weight", "bias")},
    "self_attn.q_norm.weight": "attn.q_norm.weight",
    "self_attn.k_norm.weight": "attn.k_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    # dense SwiGLU layers
    **{f"mlp.{p}_proj.weight": f"ffn.{p}_proj.weight" for p in ("gate", "up", "down")},
    # MoE layers: router, stacked experts, optional shared expert (Qwen3-Omni Talker)
    "mlp.gate.weight": "ffn.router.weight",
    **{f"mlp.experts.{{}}.{p}_proj.weight": f"ffn.experts.{p}_proj" for p in ("gate", "up", "down")},
    **{f"mlp.shared_expert.{p}_proj.weight": f"ffn.shared_expert.{p}_proj.weight" for p in ("gate", "up", "down")},
    "mlp.shared_expert_gate.weight": "ffn.shared_expert_gate.weight",
}

AUDIO_ENCODER_LAYER = {  # one Whisper-style audio encoder layer (omni.nn.audio_encoder.AudioLayer)
    "self_attn_layer_norm.{*}": "attn_norm.{*}",
    **{f"self_attn.{p}_proj.{{*}}": f"attn.{p}_proj.{{*}}" for p in "qkv"},
    "self_attn.out_proj.{*}": "attn.o_proj.{*}",
    "final_layer_norm.{*}": "mlp_norm.{*}",
    "fc1.{*}": "mlp.fc1.{*}",
    "fc2.{*}": "mlp.fc2.{*}",
}
