"""LoRA adapters on omni modules, through `peft`.

    peft_model = add_lora(model, r=16, alpha=32)                 # attention + MLP + expert projections of the Thinker
    model.thinker(**batch, labels=labels).loss.backward()         # the OmniModel itself now runs with the adapters
    save_adapter(peft_model, "adapter/")                          # adapter_config.json + adapter_model.safetensors
    peft_model = load_adapter(omni.load(base_dir), "adapter/")    # the same adapters on a fresh base model
    merged = merge_lora(peft_model); omni.save(merged, "merged/")  # plain OmniModel, official layout

What gets an adapter (all names are matched against the modules that exist, so a config without dense layers or
without a shared expert simply has fewer targets):

- "attention": q_proj, k_proj, v_proj, o_proj of every decoder layer (nn.Linear -> peft `lora.Linear`); the
  fused qkv and proj of vision blocks.
- "mlp": gate_proj, up_proj, down_proj of dense SwiGLU layers and of the Talker's shared expert; fc1, fc2 of
  encoder blocks.
- "experts": the stacked routed-expert parameters (E, out, in) through peft's `target_parameters`
  (`lora.ParamWrapper`): one rank-r pair per expert, merged into the 3-D weight before the forward. peft does
  not support dropout on these, so `dropout` must be 0 when experts are targeted.
- "router": the MoE router (a plain nn.Linear) - off by default, because adapting it changes which experts
  (and so which expert adapters) each token reaches; add it deliberately.

`scope` selects the part of the model (default the Thinker's decoder); "talker" names the speech side's two
decoders (the Talker's and the code predictor's), "code_predictor" the latter; encoders are adapted by passing their
module prefix: "thinker.vision" (fused qkv, proj, fc1, fc2 of each block) or "thinker.audio"; a tuple of
prefixes adapts several parts with one adapter, e.g. scope=("thinker.decoder", "thinker.vision").
peft wraps the OmniModel in place: the object you pass keeps working (`model.thinker(...)`, `model.generate(...)`),
and the returned PeftModel is what saves and merges the adapters.
"""

from __future__ import annotations

import re

from torch import nn

from ..errors import InputError

TARGETS = {  # decoder names first, then the encoders' (vision: fused qkv + proj, fc1/fc2 MLPs)
    "attention": r"attn\.(q_proj|k_proj|v_proj|o_proj|qkv|proj)",
    "mlp": r"(ffn\.(shared_expert\.)?(gate_proj|up_proj|down_proj)|mlp\.(fc1|fc2))",
    "router": r"ffn\.router",
}
EXPERT_PARAMETERS = r"ffn\.experts\.(gate_proj|up_proj|down_proj)"
DEFAULT_TARGETS = ("attention", "mlp", "experts")
SCOPES = {  # short names for the decoders a scope may name; any module prefix works too
    "talker": ("talker.decoder", "talker.code_predictor.decoder"),  # the speech side's two decoders
    "code_predictor": ("talker.code_predictor.decoder",),
}


def _peft():
    try:
        import peft
    except ImportError:
        raise InputError("LoRA needs the `peft` package: pip install peft") from None
    return peft


def lora_targets(model: nn.Module, targets=DEFAULT_TARGETS, scope: str = "thinker.decoder"):
    """(module names for peft `target_modules`, parameter names for `target_parameters`) under `scope`."""
    unknown = [t for t in targets if t not in TARGETS and t != "experts"]
    if unknown:
        raise InputError(f"unknown LoRA target(s) {unknown}; choose from {sorted([*TARGETS, 'experts'])}")
    scopes = tuple(p for s in ((scope,) if isinstance(scope, str) else tuple(scope)) for p in SCOPES.get(s, (s,)))
    prefix = "(" + "|".join(re.escape(x) for x in scopes) + r")\..*"
    module_rx = [re.compile(prefix + TARGETS[t] + "$") for t in targets if t in TARGETS]
    modules = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and any(r.match(n) for r in module_rx)]
    params = []
    if "experts" in targets:
        rx = re.compile(prefix + EXPERT_PARAMETERS + "$")
        params = [n for n, p in model.named_parameters() if p.ndim == 3 and rx.match(n)]
    if not modules and not params:
        raise InputError(f"no LoRA targets {list(targets)} found under {scope!r} in this model")
    return modules, params


def lora_config(model: nn.Module, r: int = 8, alpha: int = 16, dropout: float = 0.0, targets=DEFAULT_TARGETS,
                scope: str = "thinker.decoder"):
    """A peft LoraConfig naming exactly this model's targets."""
    peft = _peft()
    if not isinstance(r, int) or r <= 0:
        raise InputError(f"LoRA rank r must be a positive integer, got {r!r}")
    modules, params = lora_targets(model, targets, scope)
    if params and dropout:
        raise InputError("peft has no dropout for expert (3-D parameter) adapters: use dropout=0, or leave "
                         "'experts' out of targets")
    return peft.LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=modules or None,
                           target_parameters=params or None, bias="none")


def add_lora(model: nn.Module, r: int = 8, alpha: int = 16, dropout: float = 0.0, targets=DEFAULT_TARGETS,
             scope: str = "thinker.decoder"):
    """Wrap `model` with fresh LoRA adapters; every base weight is frozen. Returns the peft model."""
    peft = _peft()
    config = lora_config(model, r, alpha, dropout, targets, scope)
    return peft.get_peft_model(model, config)


def save_adapter(peft_model, directory) -> None:
    """Write only the adapters (adapter_config.json + adapter_model.safetensors)."""
    peft_model.save_pretrained(str(directory))


def load_adapter(model: nn.Module, directory, trainable: bool = False):
    """Put the adapters saved in `directory` onto the base `model` (e.g. a freshly loaded OmniModel)."""
    peft = _peft()
    return peft.PeftModel.from_pretrained(model, str(directory), is_trainable=trainable)


def merge_lora(peft_model) -> nn.Module:
    """Fold the adapters into the base weights and return the plain model (saveable with omni.save)."""
    return peft_model.merge_and_unload()
