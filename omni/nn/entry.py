"""`Entry`: a module whose parameters are used outside its own `forward`.

The speech side builds the Talker's inputs from several of its parts (resizing MLPs, codec embeddings, the code
predictor) before and after the decoder runs. `talker.run(fn, ...)` calls `fn(...)` as if it were the module's
forward: plainly it is just the call, and under FSDP2 (omni.training.distributed registers every `fsdp_methods`
entry with `register_fsdp_forward_method`) it gathers the module's sharded parameters first, as `forward` would.
"""

from __future__ import annotations

from torch import nn


class Entry(nn.Module):
    fsdp_methods = ("run",)

    def run(self, fn, *args, **kwargs):
        """fn(*args, **kwargs) with this module's parameters at hand (gathered under FSDP)."""
        return fn(*args, **kwargs)
