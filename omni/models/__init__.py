"""The releases: one package per release, each registering one `omni.release.Release` record on import.

    qwen3_omni/     Qwen3-Omni-30B-A3B (MoE Thinker and Talker, Code2Wav)
    qwen2_5_omni/   Qwen2.5-Omni-7B / -3B (dense Thinker and Talker, Token2Wav)

Both packages have the same file names, so `diff omni/models/qwen3_omni/talker.py omni/models/qwen2_5_omni/talker.py`
shows how the releases differ. Neither imports the other; shared code imports neither.
"""

# importing registers them, in this order (the order components and messages list them in)
from . import qwen3_omni  # noqa: F401, I001
from . import qwen2_5_omni  # noqa: F401, E402
