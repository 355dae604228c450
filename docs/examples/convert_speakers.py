"""One-off conversion of Qwen2.5-Omni's speaker presets from `spk_dict.pt` (a torch pickle) to safetensors.

omni never unpickles anything. The official Qwen2.5-Omni checkpoint ships its voices ("Chelsie", "Ethan") only as
a pickle, so convert them once, yourself, with torch's restricted loader (`weights_only=True` refuses arbitrary
Python objects):

    python docs/examples/convert_speakers.py /path/to/Qwen2.5-Omni-7B

This writes `spk_dict.safetensors` next to it, which `omni.models.qwen2_5_omni.token2wav.load_speakers(dir)` reads.
"""

import os
import sys

import torch

from omni.models.qwen2_5_omni.token2wav import save_speakers


def main(checkpoint_dir: str) -> None:
    source = os.path.join(checkpoint_dir, "spk_dict.pt")
    speakers = torch.load(source, weights_only=True, map_location="cpu")  # {name: {"bos_token", "cond", "ref_mel"}}
    target = os.path.join(checkpoint_dir, "spk_dict.safetensors")
    save_speakers(speakers, target)
    for name, s in speakers.items():
        print(f"{name}: bos_token {int(s['bos_token'])}, cond {tuple(s['cond'].shape)}, "
              f"ref_mel {tuple(s['ref_mel'].shape)}")
    print(f"wrote {target}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python convert_speakers.py CHECKPOINT_DIR")
    main(sys.argv[1])
