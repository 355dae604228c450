"""Training switches on an OmniModel: freezing parts of it and gradient checkpointing.

Components are named by what they are, not by attribute paths:

    thinker      the whole Thinker                     vision / audio   its two encoders (+ their projections)
    embeddings   the Thinker's token embedding table   decoder          its decoder stack (all layers + final norm)
    lm_head      the Thinker's output projection       talker, code2wav / token2wav   the speech side, when built

Any other dotted module path of the model (``"thinker.decoder.layers.0"``) is accepted too.

Gradient checkpointing is per block: each decoder layer and each encoder block whose owning stack has a
``gradient_checkpointing`` attribute recomputes its activations in the backward pass instead of storing them.
Only the block inputs are kept, so activation memory drops from O(layers x tokens x width x ~10) to
O(layers x tokens x width) at the price of one extra forward per step (about +30 % compute).
"""

from __future__ import annotations

from torch import nn

from ..errors import InputError

COMPONENTS = {
    "thinker": "thinker",
    "vision": "thinker.vision",
    "audio": "thinker.audio",
    "embeddings": "thinker.embed_tokens",
    "decoder": "thinker.decoder",
    "lm_head": "thinker.lm_head",
    "talker": "talker",
    "code2wav": "code2wav",
    "token2wav": "token2wav",
}


def component(model: nn.Module, name: str) -> nn.Module:
    """The submodule a component name (or dotted path) stands for; InputError when it is not in this model."""
    if not isinstance(name, str) or not name:
        raise InputError(f"component names are strings such as {sorted(COMPONENTS)}, got {name!r}")
    path = COMPONENTS.get(name, name)
    module = model
    for part in path.split("."):
        module = getattr(module, part, None)
        if not isinstance(module, nn.Module):
            hint = "" if name in COMPONENTS else f"; known components: {sorted(COMPONENTS)}"
            raise InputError(f"this model has no component {name!r} (no module at {path!r}){hint}")
    return module


def _set_trainable(model: nn.Module, names, trainable: bool) -> int:
    if not names:
        raise InputError("name at least one component, e.g. freeze('vision', 'audio')")
    modules = [component(model, n) for n in names]  # resolve all first: a typo must not leave a partial change
    count = 0
    for module in modules:
        for p in module.parameters():
            p.requires_grad_(trainable)
            count += p.numel()
    return count


def freeze(model: nn.Module, *names: str) -> int:
    """Stop training the named components (requires_grad=False). Returns the number of parameters frozen.

    Frozen encoders cost no activation memory: with no trainable input or weight, autograd records nothing
    for them."""
    return _set_trainable(model, names, False)


def unfreeze(model: nn.Module, *names: str) -> int:
    """Train the named components again. Returns the number of parameters made trainable."""
    return _set_trainable(model, names, True)


def trainable_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = trainable = 0
    for p in model.parameters():
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return trainable, total


def set_gradient_checkpointing(model: nn.Module, enabled: bool = True) -> int:
    """Switch per-block activation checkpointing on (or off) in every stack of `model` that supports it.

    Returns how many stacks were switched; 0 means nothing in this model supports it (an InputError, since the
    caller asked for something that will not happen)."""
    stacks = [m for m in model.modules() if hasattr(m, "gradient_checkpointing")]
    if not stacks:
        raise InputError(f"{type(model).__name__} has no module that supports gradient checkpointing")
    for m in stacks:
        m.gradient_checkpointing = bool(enabled)
    return len(stacks)
