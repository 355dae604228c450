"""Speaker presets of Qwen2.5-Omni, read from safetensors (never from the checkpoint's pickle).

The official checkpoint ships its voices in `spk_dict.pt`, a torch pickle: {name: {"bos_token": int,
"cond": (192,) x-vector, "ref_mel": (T, 80) reference mel}}. omni does not unpickle. Convert it once with torch
yourself (docs/examples/convert_speakers.py) into `spk_dict.safetensors` holding, per speaker,

    {name}.bos_token   int64 scalar     thinker token that opens the Talker's text track for this voice
    {name}.cond        float (192,)     speaker x-vector fed to every DiT frame
    {name}.ref_mel     float (T, 80)    reference mel the DiT's ECAPA-TDNN encodes
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from ....errors import CheckpointError
from ....files import atomic_write

SPEAKERS_FILE = "spk_dict.safetensors"
FIELDS = ("bos_token", "cond", "ref_mel")


@dataclass
class Speaker:
    bos_token: int
    cond: torch.Tensor  # (enc_emb_dim,)
    ref_mel: torch.Tensor  # (T, mel_dim)


def load_speakers(path: str | os.PathLike) -> dict[str, Speaker]:
    """Speakers from a safetensors file, or from `spk_dict.safetensors` in a checkpoint directory."""
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, SPEAKERS_FILE)
    if not os.path.isfile(path):
        hint = ""
        pickle = os.path.join(os.path.dirname(path), "spk_dict.pt")
        if os.path.isfile(pickle):
            hint = (f" ({pickle} is a torch pickle, which omni never loads: convert it once with "
                    "docs/examples/convert_speakers.py)")
        raise CheckpointError(f"no speaker file {path}{hint}")
    try:
        tensors = load_file(path)
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"cannot read speakers from {path}: {e}") from None
    fields: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        name, _, field = key.rpartition(".")
        if not name or field not in FIELDS:
            raise CheckpointError(f"{path}: unexpected key {key!r}; expected '<speaker>.{{{','.join(FIELDS)}}}'")
        fields.setdefault(name, {})[field] = tensor
    speakers = {}
    for name, f in fields.items():
        missing = [k for k in FIELDS if k not in f]
        if missing:
            raise CheckpointError(f"{path}: speaker {name!r} lacks {missing}; re-run the conversion")
        if f["bos_token"].numel() != 1 or f["cond"].dim() != 1 or f["ref_mel"].dim() != 2:
            raise CheckpointError(
                f"{path}: speaker {name!r} has bos_token {tuple(f['bos_token'].shape)}, cond "
                f"{tuple(f['cond'].shape)}, ref_mel {tuple(f['ref_mel'].shape)}; expected a scalar, (D,) and (T, mel)"
            )
        speakers[name] = Speaker(int(f["bos_token"].item()), f["cond"].float(), f["ref_mel"].float())
    return speakers


def save_speakers(speakers: dict, path: str | os.PathLike) -> None:
    """Write speakers ({name: Speaker or {"bos_token", "cond", "ref_mel"}}) in the layout `load_speakers` reads."""
    tensors = {}
    for name, s in speakers.items():
        s = s if isinstance(s, Speaker) else Speaker(**{k: s[k] for k in FIELDS})
        tensors[f"{name}.bos_token"] = torch.tensor(int(s.bos_token), dtype=torch.int64)
        tensors[f"{name}.cond"] = torch.as_tensor(s.cond).reshape(-1).float().contiguous()
        tensors[f"{name}.ref_mel"] = torch.as_tensor(s.ref_mel).reshape(-1, s.ref_mel.shape[-1]).float().contiguous()
    with atomic_write(path, "wb") as f:  # the old file stays whole until the new one is complete
        f.write(save(tensors))
