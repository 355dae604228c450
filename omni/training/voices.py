"""New voices (Qwen3-Omni): learn one speaker vector from a speaker's codes, everything else frozen.

A Qwen3-Omni voice is the vector the Talker's prompt carries at its speaker position (a row of the codec
embedding for the presets, `talker_config.speaker_id`). A learned voice is a new such vector (D,), trained with
`speech_loss` while no parameter of the model changes, so every other voice speaks exactly as before:

    report = learn_voice(model, "anna", examples, steps=200, lr=0.05)     # registers talker.learned_voices["anna"]
    model.generate(messages, speak=True, voice="anna")
    save_voice(model, "anna", "anna.safetensors"); load_voice(other_model, "anna.safetensors")

examples: a list of dicts, each one `speech_loss` batch of the new speaker: {"batch": the prompt (processor
layout, ending with the assistant header), "reply": (B, N) Thinker reply ids (end token included), "codes":
(B, G, F) the codec codes of that reply spoken by the speaker, optionally "lengths": (B,) real frames}. Steps
cycle through them. Where codes come from is the user's choice (docs/training.md, "Target codes").

Voice files: safetensors holding `speaker` (D,) float32 and `probe` (6, D), the codec embedding's control rows
(pad, bos, eos, nothink, think_bos, think_eos) of the model the voice was learned on; metadata: format, name,
model_type, hidden_size. A file whose model_type, width or probe (cosine similarity < 0.99: another checkpoint)
does not match the model is refused. Beside a checkpoint they live in `<checkpoint>/voices/<name>.safetensors`:
`omni.load` registers every file there, `omni.save` writes the model's learned voices there (files it did not
write are left alone, so a voice removed from `talker.learned_voices` stays on disk until you delete its file).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field

import torch

from ..checks import boolean, integer, number
from ..errors import CheckpointError, InputError
from ..files import atomic_write
from ..release import release_of, releases

VOICES_DIR = "voices"  # beside the weights: <checkpoint>/voices/<name>.safetensors
FORMAT = "omni.voice/1"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # also its file name: no paths, no hidden files
_PROBE_MATCH = 0.99  # cosine similarity of the probe rows: the same checkpoint (any dtype) vs another one


@dataclass
class VoiceReport:
    name: str
    vector: torch.Tensor  # (D,) the learned speaker vector, as registered
    losses: list[float] = field(default_factory=list)  # speech loss of every step (before its update)
    initial_loss: float = math.nan  # mean loss over the examples before the first step


def learn_voice(model, name: str, examples, steps: int = 200, lr: float = 0.05, overwrite: bool = False,
                init=None, thinker_eos_token_ids=None) -> VoiceReport:
    """Learn the speaker vector of `name` from `examples` (module docstring) and register it in
    `model.talker.learned_voices`. Only that vector is trained (Adam, cosine-decayed `lr`); no parameter of the
    model changes or gets a gradient. init: the start vector: None (the mean of the preset voices' vectors), a
    voice name, or a (D,) tensor. Every input is checked (and every example's loss computed once) before step 1."""
    from .speech import speech_loss

    talker = _talker(model)
    name = _new_name(model, name, overwrite)
    steps = integer("steps", steps, 1, 100_000)
    lr = number("lr", lr, 0.0, 10.0, low_open=True, what="a learning rate in (0, 10]")
    if not isinstance(examples, (list, tuple)) or not examples:
        raise InputError("examples must be a non-empty list of {'batch', 'reply', 'codes'[, 'lengths']} dicts")
    examples = [_example(i, e) for i, e in enumerate(examples)]
    start = _init(model, talker, init)
    flags = {p: p.requires_grad for p in model.parameters()}
    was_training = model.training
    vector = start.detach().clone().float().requires_grad_(True)
    report = VoiceReport(name, vector)
    try:
        for p in flags:
            p.requires_grad_(False)
        model.eval()  # learn the voice as generation will use it
        with torch.no_grad():  # every example checked (speech_loss's input checks) before any step
            first = [speech_loss(model, voice=vector, thinker_eos_token_ids=thinker_eos_token_ids, **e).loss
                     for e in examples]
        report.initial_loss = float(torch.stack(first).mean())
        opt = torch.optim.Adam([vector], lr=lr)
        for step in range(steps):
            for group in opt.param_groups:
                group["lr"] = lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / steps)))
            loss = speech_loss(model, voice=vector, thinker_eos_token_ids=thinker_eos_token_ids,
                               **examples[step % len(examples)]).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            report.losses.append(loss.item())
    finally:
        for p, flag in flags.items():
            p.requires_grad_(flag)
        model.train(was_training)
    dtype = talker.codec_embedding.weight.dtype
    report.vector = vector.detach().to(dtype).clone()
    talker.learned_voices[name] = report.vector
    return report


def save_voice(model, name: str, path) -> None:
    """Write the learned voice `name` to `path` (a small safetensors file; atomic: the old file stays whole until
    the new one is complete)."""
    from safetensors.torch import save

    talker = _talker(model)
    found = {k.lower(): k for k in talker.learned_voices}
    if not isinstance(name, str) or name.lower() not in found:
        raise InputError(f"no learned voice {name!r}; learned voices: {sorted(talker.learned_voices) or 'none'}")
    name = found[name.lower()]
    if not isinstance(path, (str, os.PathLike)):
        raise InputError(f"path must be a file path, got {type(path).__name__}")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise InputError(f"cannot write {path}: the folder {folder} does not exist")
    tensors = {"speaker": talker.learned_voices[name].detach().float().cpu().contiguous(),
               "probe": _probe(model).cpu().contiguous()}
    metadata = {"format": FORMAT, "name": name, "model_type": model.config.model_type,
                "hidden_size": str(talker.codec_embedding.weight.shape[1])}
    with atomic_write(path, "wb") as f:
        f.write(save(tensors, metadata))


def load_voice(model, path, overwrite: bool = False) -> str:
    """Register the voice in the file `path` (from `save_voice`) in `model.talker.learned_voices`; returns its
    name. A file of another model (type, width or checkpoint) or a name the model has is refused (the latter
    unless overwrite=True)."""
    talker = _talker(model)
    meta, speaker, probe = read_voice_file(path)
    problem = _mismatch(model, talker, path, meta, speaker, probe)
    if problem:
        raise CheckpointError(problem)
    name = _new_name(model, meta["name"], overwrite)
    param = talker.codec_embedding.weight
    talker.learned_voices[name] = speaker.to(device=param.device, dtype=param.dtype)
    return name


def read_voice_file(path) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """(metadata, speaker (D,), probe (6, D)) of a voice file, its format checked (not yet against a model)."""
    from safetensors import SafetensorError, safe_open

    if not isinstance(path, (str, os.PathLike)) or not os.path.isfile(path):
        raise CheckpointError(f"no voice file {path!r}")
    try:
        with safe_open(os.fspath(path), "pt") as f:
            meta = f.metadata() or {}
            keys = set(f.keys())
            if meta.get("format") != FORMAT or keys != {"speaker", "probe"}:
                raise CheckpointError(f"{path} is not an omni voice file (format {meta.get('format')!r}, tensors "
                                      f"{sorted(keys)}); write voice files with omni.training.save_voice")
            speaker, probe = f.get_tensor("speaker"), f.get_tensor("probe")
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"cannot read the voice file {path}: {e}") from None
    name = meta.get("name", "")
    if not _NAME.match(name) or speaker.dim() != 1 or probe.dim() != 2 or not torch.isfinite(speaker).all():
        raise CheckpointError(f"{path}: a damaged voice file (name {name!r}, speaker {tuple(speaker.shape)}, probe "
                              f"{tuple(probe.shape)}); save it again with omni.training.save_voice")
    return meta, speaker.float(), probe.float()


def voice_file_names(directory) -> list[str]:
    """The voice names of the files in `<directory>/voices` (what omni.load will register), without loading them."""
    folder = os.path.join(os.fspath(directory), VOICES_DIR)
    if not os.path.isdir(folder):
        return []
    return sorted(n[: -len(".safetensors")] for n in os.listdir(folder) if n.endswith(".safetensors")
                  and not n.startswith("."))


def load_voices_beside(model, directory) -> list[str]:
    """omni.load's hook: register every voice file in `<directory>/voices` (when the Talker is loaded)."""
    if getattr(model, "talker", None) is None:
        return []
    folder = os.path.join(os.fspath(directory), VOICES_DIR)
    return [load_voice(model, os.path.join(folder, f"{n}.safetensors"), overwrite=True)
            for n in voice_file_names(directory)]


def save_voices_beside(model, directory) -> None:
    """omni.save's hook: write every learned voice into `<directory>/voices/<name>.safetensors`."""
    talker = getattr(model, "talker", None)
    if talker is None or not talker.learned_voices:
        return
    folder = os.path.join(os.fspath(directory), VOICES_DIR)
    os.makedirs(folder, exist_ok=True)
    for name in talker.learned_voices:
        save_voice(model, name, os.path.join(folder, f"{name}.safetensors"))


# -- checks ------------------------------------------------------------------------------------------------------

def _talker(model):
    release = release_of(model)
    if not release.learns_voices:
        raise InputError(f"learned voices are not supported for {release.name}: its voices are Token2Wav speaker "
                         "presets (spk_dict.safetensors), not a Talker speaker vector")
    if getattr(model, "talker", None) is None:
        raise InputError("this model was loaded without the Talker; a voice needs it (load with "
                         "components=('thinker', 'talker'))")
    return model.talker


def _new_name(model, name, overwrite) -> str:
    overwrite = boolean("overwrite", overwrite)
    if not isinstance(name, str) or not _NAME.match(name):
        raise InputError(f"a voice name is 1-64 letters, digits, '_', '-' or '.' starting with a letter or digit (it "
                         f"names its file), got {name!r}")
    taken = {str(k).lower() for k in release_of(model).voices(model)}
    if name.lower() in taken and not overwrite:
        raise InputError(f"the model already has a voice {name!r}; choose another name or pass overwrite=True")
    for old in [k for k in model.talker.learned_voices if k.lower() == name.lower()]:
        del model.talker.learned_voices[old]  # one entry per name whatever its case
    return name


def _example(i: int, example) -> dict:
    if not isinstance(example, dict) or not {"batch", "reply", "codes"} <= set(example):
        raise InputError(f"example {i} must be a dict with 'batch', 'reply', 'codes' (and optionally 'lengths'), "
                         f"got {type(example).__name__}{sorted(example) if isinstance(example, dict) else ''}")
    unknown = sorted(set(example) - {"batch", "reply", "codes", "lengths"})
    if unknown:
        raise InputError(f"example {i} has unknown key(s) {unknown}; expected batch, reply, codes, lengths")
    if not isinstance(example["batch"], dict):
        raise InputError(f"example {i}: 'batch' must be the prompt batch dict (input_ids, attention_mask, media)")
    return example


def _init(model, talker, init) -> torch.Tensor:
    from ..speech import find_voice

    D = talker.codec_embedding.weight.shape[1]
    if init is None:
        presets = model.config.talker_config.speaker_id or {}
        if not presets:
            return torch.zeros(D)
        return talker.codec_embedding.weight[torch.tensor(sorted(presets.values()))].detach().float().mean(0)
    if isinstance(init, str):
        found = find_voice(release_of(model).voices(model), init)
        return (found if torch.is_tensor(found) else talker.codec_embedding.weight[int(found)]).detach().float()
    if not torch.is_tensor(init) or init.shape != (D,) or not bool(torch.isfinite(init).all()):
        raise InputError(f"init must be None, a voice name or a finite ({D},) tensor (the Talker's width)")
    return init.detach().float()


def _probe(model) -> torch.Tensor:
    tk = model.config.talker_config
    rows = [tk.codec_pad_id, tk.codec_bos_id, tk.codec_eos_token_id, tk.codec_nothink_id, tk.codec_think_bos_id,
            tk.codec_think_eos_id]
    weight = model.talker.codec_embedding.weight
    return weight[torch.tensor(rows, device=weight.device)].detach().float()


def _mismatch(model, talker, path, meta: dict, speaker, probe) -> str | None:
    D = talker.codec_embedding.weight.shape[1]
    if releases().get(meta.get("model_type")) is not release_of(model):
        return f"{path} is a voice of a {meta.get('model_type')!r} model, not of this {model.config.model_type!r} one"
    if speaker.shape != (D,) or meta.get("hidden_size") != str(D):
        return (f"{path} is a voice of a model {meta.get('hidden_size')} wide; this Talker is {D} wide (another "
                "model size): learn the voice again on this model")
    ours = _probe(model).cpu()
    if probe.shape != ours.shape:
        return f"{path}: its probe has shape {tuple(probe.shape)}, expected {tuple(ours.shape)}; a damaged file"
    similarity = torch.nn.functional.cosine_similarity(probe.flatten(), ours.flatten(), dim=0).item()
    if not similarity >= _PROBE_MATCH:
        return (f"{path} was learned on another checkpoint of this model size (its codec embedding differs: cosine "
                f"{similarity:.3f}); a speaker vector only means something to the Talker it was learned with")
    return None
