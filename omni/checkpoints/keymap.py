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


def release_table(decoders: dict[str, str], decoder_layer: dict[str, str], *parts: dict[str, str]) -> dict[str, str]:
    """One release's whole table: every decoder-layer row under every decoder prefix, then the other parts."""
    table = {}
    for off_prefix, omni_prefix in decoders.items():
        for off, omni in decoder_layer.items():
            table[off_prefix + off] = omni_prefix + omni
    for part in parts:
        table.update(part)
    return table
