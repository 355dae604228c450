"""Fine-tuning and training at scale.

    switches.py     freeze / unfreeze components, gradient checkpointing (also methods of OmniModel)
    lora.py         LoRA adapters through `peft` (attention, MLP and expert projections), save / reload / merge
    distributed.py  FSDP2 sharding per decoder layer and encoder block, process-group setup from torchrun

The loss is the Thinker's own: `model.thinker(**batch, labels=..., output_router_logits=True).loss` is the causal
LM loss plus `router_aux_loss_coef` times the router load-balancing loss, as in the reference. See docs/training.md.
`peft` is imported only when LoRA is used.

    speech.py       the speech side's loss: `speech_loss(model, batch, reply, codes)` (Talker + code predictor)
    voices.py       a new voice (Qwen3-Omni): learn_voice, save_voice / load_voice (voice files beside checkpoints)
"""

from .speech import speech_loss
from .voices import learn_voice, load_voice, save_voice
from .switches import COMPONENTS, component, freeze, set_gradient_checkpointing, trainable_parameters, unfreeze

__all__ = [
    "COMPONENTS", "component", "freeze", "unfreeze", "set_gradient_checkpointing", "trainable_parameters",
    "speech_loss", "learn_voice", "save_voice", "load_voice",
]
