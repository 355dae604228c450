"""How one block of a config.json becomes a typed, checked dataclass and back: `Section`.

    from_dict(d)    keys -> fields (aliases too), nested sections parsed recursively, unknown keys kept in `extra`;
                    every field checked against its annotation and the range rules below (`check_field`), then the
                    section's own `validate` (relations between fields)
    to_dict()       back to the keys it came with; fields the file omitted stay omitted: a lossless round trip
    replace(**kw)   a copy with some fields changed, checked the same way (what OmniConfig.from_name's overrides use)

Range rules, by field name, for the numbers of every release's sections:

    int      positive; non-negative for ids (`*_id`) and for num_experts, shared_expert_intermediate_size and
             accept_hidden_layer (0 means none / the embeddings); at most 2**31 - 1, and at most 4096 for the
             counts a build loops over (layers, blocks, heads, experts, code groups)
    float    finite and positive; router_aux_loss_coef >= 0, dropout in [0, 1), layer_scale_initial_scale any
    list     of positive integers; of non-negative ones for layer and block indexes (`*_indexes`, `*_layers`);
             resblock_dilation_sizes: lists of positive integers
    bool / str / dict   exactly that type: "false" (a string) is not a boolean, "64" is not a number
"""

from __future__ import annotations

import copy
import dataclasses
import math
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .errors import ConfigError

REQUIRED: Any = dataclasses.MISSING  # marker default: the key must be present in config.json
MAX_DEPTH = 32  # JSON nesting a config may have; deeper is refused before it can exhaust the stack

_NON_NEGATIVE = {"num_experts", "shared_expert_intermediate_size", "accept_hidden_layer"}
INT_CAP = 2**31 - 1
COUNT_CAP = 4096  # the releases use at most 128 (experts); a build makes one module per unit of these
_COUNTS = {"num_hidden_layers", "depth", "encoder_layers", "num_experts", "num_experts_per_tok", "num_attention_heads",
           "num_key_value_heads", "num_heads", "encoder_attention_heads", "num_code_groups", "num_quantizers",
           "enc_res2net_scale", "accept_hidden_layer"}
_FLOAT_RANGES = {  # name -> (lowest, highest, lowest allowed?, what to say)
    "router_aux_loss_coef": (0.0, math.inf, True, "a number >= 0"),
    "dropout": (0.0, 1.0, True, "a number in [0, 1)"),
    "layer_scale_initial_scale": (-math.inf, math.inf, True, "a finite number"),
}
_WORDING = {"num_experts": "0 (dense) or a positive integer"}


@dataclass(kw_only=True)
class Section:
    """Base of every config block: checked parsing, lossless round trip."""

    MODEL_TYPES: ClassVar[tuple[str, ...]] = ()  # accepted `model_type` values ("" = none written)
    ALIASES: ClassVar[dict[str, tuple[str, ...]]] = {}  # field -> other keys the file may use for it

    extra: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: dict | None, where: str = "config"):
        if d is None:
            d = {}
        if isinstance(d, Section):
            return d
        if not isinstance(d, dict):
            raise ConfigError(f"{where}: expected a JSON object, got {type(d).__name__}")
        d = dict(d)
        mt = d.get("model_type")
        if mt is not None and not isinstance(mt, str):
            raise ConfigError(f"{where}.model_type must be a string, got {mt!r}")
        if cls.MODEL_TYPES and mt not in (None, "", *cls.MODEL_TYPES):
            raise ConfigError(
                f"{where}: model_type is {mt!r}, expected one of {list(cls.MODEL_TYPES)}; "
                "is this config.json from a different model?"
            )
        hints = typing.get_type_hints(cls)
        kwargs, extra, missing = {}, {}, []
        for f in dataclasses.fields(cls):
            if f.name == "extra":
                continue
            key = f.name
            if key not in d:
                key = next((a for a in cls.ALIASES.get(f.name, ()) if a in d), f.name)
                if key != f.name:
                    extra["_alias_" + f.name] = key  # write it back under the name it came with
            if key in d:
                kwargs[f.name] = _parse_field(where, f.name, d.pop(key), hints[f.name])
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                missing.append(f.name)
        if missing:
            raise ConfigError(f"{where}: missing required field(s) {missing}; add them to config.json")
        for key, value in d.items():
            _check_depth(f"{where}.{key}", value)
        extra.update(d)
        try:
            obj = cls(**kwargs)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{where}: {e}") from None
        obj.extra = extra
        obj._given = frozenset(kwargs)
        obj.validate(where)
        return obj

    def validate(self, where: str) -> None:
        """Raise ConfigError for values the model cannot be built with. Subclasses extend."""

    def to_dict(self) -> dict:
        out = {}
        for f in dataclasses.fields(self):
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            given = getattr(self, "_given", None)
            if given is not None and f.name not in given and value == _default(f):
                continue  # omitted in the file it came from: keep it omitted
            if isinstance(value, Section):
                value = value.to_dict()
            key = self.extra.get("_alias_" + f.name, f.name)
            out[key] = copy.deepcopy(value)
        out.update({k: copy.deepcopy(v) for k, v in self.extra.items() if not k.startswith("_alias_")})
        return out

    def replace(self, **changes):
        """A copy with `changes` applied (nested sections may be given as dicts), checked like `from_dict`."""
        where = type(self).__name__
        names = {f.name for f in dataclasses.fields(self)} - {"extra"}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise ConfigError(f"{where}: unknown field(s) {unknown}; fields are the config.json keys of this section")
        hints = typing.get_type_hints(type(self))
        changes = {k: _parse_field(where, k, v, hints[k]) for k, v in changes.items()}
        new = dataclasses.replace(self, **changes)
        new.extra = copy.deepcopy(self.extra)
        new.validate(where)
        return new


def _default(f):
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def _section_type(tp):
    """The Section class a field annotation names (`X` or `X | None`), or None."""
    for arg in (tp, *typing.get_args(tp)):
        if isinstance(arg, type) and issubclass(arg, Section):
            return arg
    return None


def _positive(where: str, **values):
    for name, v in values.items():
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise ConfigError(f"{where}.{name} must be a positive integer, got {v!r}")


def _parse_field(where: str, name: str, value, tp):
    """One field's value from the file: a nested section parsed, anything else checked (`check_field`)."""
    sub = _section_type(tp)
    if sub is not None:
        return None if value is None else sub.from_dict(value, f"{where}.{name}")
    check_field(where, name, value, tp)
    return value


def check_field(where: str, name: str, value, tp) -> None:
    """The type of `value` against the annotation `tp` (int, float, bool, str, list, dict, or one of them | None)
    and its range by the module's rules; ConfigError naming `where.name`, what it must be and what it is."""
    options = set(typing.get_args(tp)) or {tp}
    if value is None:
        if type(None) in options:
            return
        raise ConfigError(f"{where}.{name} must be given a value, got null")
    kind = next(iter(options - {type(None)}))
    what = _describe(name, kind)
    hint = "; write it without quotes" if isinstance(value, str) and kind in (int, float, bool) else ""
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool) and _int_ok(name, value)
    elif kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and _float_ok(name, value)
    elif kind is list:
        ok = isinstance(value, list) and _list_ok(name, value)
    elif kind is dict:
        ok = isinstance(value, dict) and _dict_ok(where, name, value)
    else:
        ok = isinstance(value, kind)
    if not ok:
        cap = COUNT_CAP if name in _COUNTS else INT_CAP
        if isinstance(value, int) and not isinstance(value, bool) and value > cap:
            what += f" of at most {cap}"
        raise ConfigError(f"{where}.{name} must be {what}, got {value!r}{hint}")


def _describe(name: str, kind) -> str:
    if name in _WORDING:
        return _WORDING[name]
    if kind is int:
        return "a non-negative integer" if _non_negative(name) else "a positive integer"
    if kind is float:
        return _FLOAT_RANGES[name][3] if name in _FLOAT_RANGES else "a positive number"
    if kind is list:
        inner = "non-negative" if name.endswith(("_indexes", "_layers")) else "positive"
        return "a list of lists of positive integers" if name == "resblock_dilation_sizes" else \
            f"a list of {inner} integers"
    return {bool: "true or false", str: "a string", dict: "a JSON object"}.get(kind, kind.__name__)


def _non_negative(name: str) -> bool:
    return name in _NON_NEGATIVE or name.endswith("_id")


def _int_ok(name: str, value: int) -> bool:
    return (value >= 0 if _non_negative(name) else value > 0) and value <= (COUNT_CAP if name in _COUNTS else INT_CAP)


def _float_ok(name: str, value) -> bool:
    low, high, low_ok, _ = _FLOAT_RANGES.get(name, (0.0, math.inf, False, ""))
    return math.isfinite(value) and (value >= low if low_ok else value > low) and value < high


def _positive_ints(items, allow_zero: bool = False) -> bool:
    return len(items) <= COUNT_CAP and all(isinstance(x, int) and not isinstance(x, bool) and
                                           (x >= 0 if allow_zero else x > 0) and x <= INT_CAP for x in items)


def _list_ok(name: str, value: list) -> bool:
    if name == "resblock_dilation_sizes":
        return all(isinstance(x, list) and _positive_ints(x) for x in value)
    return _positive_ints(value, allow_zero=name.endswith(("_indexes", "_layers")))


def _dict_ok(where: str, name: str, value: dict) -> bool:
    """Dicts with a known inside: the rotary parameters and the voices."""
    _check_depth(f"{where}.{name}", value)
    if name in ("rope_parameters", "rope_scaling"):
        theta = value.get("rope_theta")
        if theta is not None:
            check_field(f"{where}.{name}", "rope_theta", theta, float)
        section = value.get("mrope_section")
        if section is not None and not (isinstance(section, list) and _positive_ints(section)):
            raise ConfigError(f"{where}.{name}.mrope_section must be a list of positive integers, got {section!r}")
    if name == "speaker_id":
        return all(isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 0
                   for k, v in value.items())
    return True


def _check_depth(where: str, value, depth: int = 0) -> None:
    if depth > MAX_DEPTH:
        raise ConfigError(f"{where}: nested more than {MAX_DEPTH} levels deep; this is not a config.json section")
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    for child in children:
        _check_depth(where, child, depth + 1)
