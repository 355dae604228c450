"""Processor: conversations (text + images + audio + video) -> the batch of tensors the Thinker takes.

    processor = omni.Processor.from_pretrained(checkpoint_dir)
    batch = processor([{"role": "user", "content": [{"type": "image", "image": "cat.png"},
                                                     {"type": "text", "text": "What is this?"}]}])

Steps, in the order the official Qwen3-Omni processor takes them:

1. Render each conversation with the chat template (one wrapped placeholder per media item) and collect the media
   in content order. Raw prompts can be passed instead as ``text=`` with ``images= / videos= / audio=`` lists.
2. Preprocess the media: images and video frames into flattened patches and (t, h, w) grids; waveforms into
   log-mel features (the audio of all items of the batch is padded together, in prompt order).
3. Expand every placeholder to as many copies as its item produces embeddings: an image or a video gives
   t·h·w / merge² tokens, an audio clip `audio_token_count(frames)`. With ``use_audio_in_video=True`` a video's
   own sound track is folded into the video: the single ``<|video_pad|>`` becomes
   ``<|audio_start|>`` + video and audio placeholders interleaved by time + ``<|audio_end|>`` (see
   `interleave_video_audio`), so the prompt reads vision_start, audio_start, ..., audio_end, vision_end.
4. Tokenise and pad the batch (left for generation, right for training) with attention masks; optionally build
   training labels where everything but the assistant replies is -100.

Qwen2.5-Omni checkpoints (``model_type="qwen2_5_omni"``, read from config.json) differ in the details its official
processor has: 25 positions per second and 40 ms audio tokens (`pooled_audio_token_count`), audio padded and cut
to 30 s, a video's sound track interleaved in chunks of ``seconds_per_chunk`` (`interleave_video_audio_chunks`),
videos assumed at 2 fps when no rate is given, and 14-pixel patches normalised with the CLIP mean / std.

The keys and layouts are those of the official processor: input_ids, attention_mask, pixel_values,
image_grid_thw, pixel_values_videos, video_grid_thw, video_second_per_grid, input_features,
feature_attention_mask (media keys only when that medium is present).
"""

from __future__ import annotations

import json
import math
import os
import re

import torch

from .errors import ConfigError, InputError
from .positions import audio_token_count, chunk_slices, pooled_audio_token_count
from .tokenizers.chat import MEDIA_TYPES, check_chat_template, check_messages, load_chat_template, render_chat
from .tokenizers.text import TextTokenizer

IGNORE_INDEX = -100  # label value the loss skips


def interleave_video_audio(grid_thw, n_audio: int, seconds_per_grid: float, per_second: float, merge: int,
                           video: str, audio: str) -> list[str]:
    """Placeholder order for a video with its sound track: each temporal grid's h·w/merge² video tokens sit at
    time t·seconds_per_grid·per_second (in position ids), audio token j sits at time j; a video grid goes before
    an audio token of the same time. Returns the token strings (without the surrounding audio start/end)."""
    t, h, w = (int(x) for x in grid_thw)
    per_grid = (h // merge) * (w // merge)
    out, emitted = [], 0
    for ti in range(t):
        start = ti * seconds_per_grid * per_second
        # audio tokens strictly earlier than this grid's time come first
        upto = min(n_audio, max(emitted, math.ceil(start)))
        out += [audio] * (upto - emitted)
        emitted = upto
        out += [video] * per_grid
    out += [audio] * (n_audio - emitted)
    return out


def interleave_video_audio_chunks(grid_thw, n_audio: int, seconds_per_grid: float, per_second: float, merge: int,
                                  seconds_per_chunk: float, video: str, audio: str) -> list[str]:
    """Qwen2.5-Omni's placeholder order for a video with its sound track: the video tokens of chunk 0, the audio
    tokens of chunk 0, then chunk 1, ... (chunks of seconds_per_chunk, cut like the position ids are; see
    `omni.positions.chunk_slices`). Returns the token strings (without the surrounding audio start/end)."""
    t, h, w = (int(x) for x in grid_thw)
    per_grid = (h // merge) * (w // merge)
    units = int(per_second * seconds_per_chunk)
    video_times = torch.arange(t, dtype=torch.float64).repeat_interleave(per_grid) * seconds_per_grid * per_second
    video_chunks = chunk_slices(video_times, units)
    audio_chunks = chunk_slices(torch.arange(n_audio), units)
    out = []
    for j in range(max(len(video_chunks), len(audio_chunks))):
        if j < len(video_chunks):
            out += [video] * (video_chunks[j].stop - video_chunks[j].start)
        if j < len(audio_chunks):
            out += [audio] * (audio_chunks[j].stop - audio_chunks[j].start)
    return out


# What a Qwen2.5-Omni checkpoint's processor does differently when its files do not say otherwise.
QWEN2_5_MEDIA_DEFAULTS = {
    "patch_size": 14,
    "image_mean": (0.48145466, 0.4578275, 0.40821073),  # CLIP
    "image_std": (0.26862954, 0.26130258, 0.27577711),
}
QWEN2_5_VIDEO_FPS = 2.0  # the official Qwen2.5 processor's rate when none is given
QWEN2_5_AUDIO_SAMPLES = 30 * 16000  # audio is padded / cut to 30 s


def _flat(items, what: str) -> list:
    """Media lists may be flat or nested per sample (as the official processor accepts); flatten in order."""
    if items is None:
        return []
    if not isinstance(items, (list, tuple)):
        items = [items]
    out = []
    for x in items:
        if isinstance(x, (list, tuple)) and what != "audio":
            out.extend(x)
        else:
            out.append(x)
    return out


class Processor:
    """Text tokenizer + chat template + image/video/audio preprocessing, with the official placeholder layout.

    Options (defaults are the Qwen3-Omni release's): ``merge_size`` (2x2 patch merge), ``n_window`` (audio chunk
    half-size in frames), ``position_id_per_seconds`` (13 temporal positions per second, used to interleave a
    video with its audio), ``video_fps`` (the sampling rate of the given frames; the official processor assumes 1.0
    when none is given), ``sampling_rate`` (16 kHz audio), and per-modality keyword dicts ``image_options``,
    ``video_options``, ``audio_options`` handed to the preprocessing functions. ``model_type`` picks the release's
    rules (``"qwen2_5_omni"``: see the module docstring; ``seconds_per_chunk`` is its interleaving chunk).
    """

    def __init__(self, tokenizer: TextTokenizer, *, chat_template: str | None = None, merge_size: int = 2,
                 n_window: int = 50, position_id_per_seconds: float = 13.0, video_fps: float | None = None,
                 sampling_rate: int = 16000, image_options: dict | None = None, video_options: dict | None = None,
                 audio_options: dict | None = None, model_type: str = "qwen3_omni_moe",
                 seconds_per_chunk: float = 2.0):
        if not isinstance(tokenizer, TextTokenizer):
            raise ConfigError(f"Processor needs an omni TextTokenizer, got {type(tokenizer).__name__}")
        if model_type not in ("qwen3_omni_moe", "qwen2_5_omni"):
            raise ConfigError(f"Processor model_type {model_type!r} is not supported; use 'qwen3_omni_moe' or "
                              "'qwen2_5_omni'")
        self.model_type, self.seconds_per_chunk = model_type, seconds_per_chunk
        if model_type == "qwen2_5_omni":
            image_options = {**QWEN2_5_MEDIA_DEFAULTS, **(image_options or {})}
            video_options = {**QWEN2_5_MEDIA_DEFAULTS, **(video_options or {})}
            audio_options = {"max_samples": QWEN2_5_AUDIO_SAMPLES, **(audio_options or {})}
            video_fps = QWEN2_5_VIDEO_FPS if video_fps is None else video_fps
        self.tokenizer = tokenizer
        self.chat_template = chat_template or tokenizer.chat_template
        if self.chat_template:
            check_chat_template(self.chat_template)  # a broken template fails at load, not at the first request
        self.merge_size, self.n_window = merge_size, n_window
        self.position_id_per_seconds, self.video_fps = position_id_per_seconds, video_fps
        self.sampling_rate = sampling_rate
        self.image_options = dict(image_options or {})
        self.video_options = dict(video_options or {})
        self.audio_options = dict(audio_options or {})
        t = tokenizer.token
        self.image_token, self.video_token, self.audio_token = t("image_pad"), t("video_pad"), t("audio_pad")
        self.audio_start, self.audio_end = t("audio_start"), t("audio_end")
        self._placeholder = re.compile("|".join(re.escape(x) for x in (self.image_token, self.video_token,
                                                                        self.audio_token)))

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, **overrides) -> "Processor":
        """Tokenizer, chat template and media options from a checkpoint directory; the token ids are checked
        against its config.json, which also gives merge size, audio window and positions per second."""
        directory = os.fspath(directory)
        config_file = os.path.join(directory, "config.json")
        has_config = os.path.isfile(config_file)
        tokenizer = TextTokenizer.from_pretrained(directory, config=config_file if has_config else None)
        options = {"chat_template": load_chat_template(directory)}
        if has_config:
            with open(config_file, encoding="utf-8") as f:
                root = json.load(f)
            thinker = root.get("thinker_config") or {}
            vision, audio = thinker.get("vision_config") or {}, thinker.get("audio_config") or {}
            for key, value in (("merge_size", vision.get("spatial_merge_size")), ("n_window", audio.get("n_window")),
                               ("position_id_per_seconds", thinker.get("position_id_per_seconds")),
                               ("model_type", root.get("model_type")),
                               ("seconds_per_chunk", thinker.get("seconds_per_chunk"))):
                if value is not None:
                    options[key] = value
        options.update(_media_options(directory))
        options.update(overrides)
        return cls(tokenizer, **options)

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write the tokenizer files and the chat template (chat_template.jinja) into `directory`."""
        directory = os.fspath(directory)
        self.tokenizer.save_pretrained(directory)
        if self.chat_template:
            with open(os.path.join(directory, "chat_template.jinja"), "w", encoding="utf-8") as f:
                f.write(self.chat_template)

    # ------------------------------------------------------------------ entry point
    def __call__(self, messages=None, *, text=None, images=None, videos=None, audio=None, video_audio=None,
                 use_audio_in_video: bool = False, add_generation_prompt: bool = True, padding_side: str = "left",
                 return_labels: bool = False) -> dict:
        """Build the model batch.

        messages: one conversation or a list of them (media are taken from their content items; a video item may
          carry its sound track as ``{"type": "video", "video": frames, "audio": waveform}``, otherwise it is read
          from the video file when ``use_audio_in_video``).
        text: instead of messages, prompt strings that already hold one placeholder per item, with ``images``,
          ``videos`` (flat or nested per prompt; each video a path or a frame array), ``audio`` (flat, prompt order)
          and ``video_audio`` (one waveform or None per video, for ``use_audio_in_video``).
        Audio is a file path, an ``(array, rate)`` pair, or an array at ``sampling_rate`` (16 kHz by default).
        """
        if padding_side not in ("left", "right"):
            raise InputError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
        if (messages is None) == (text is None):
            raise InputError("pass either messages (conversations) or text (prompt strings), not both or neither")
        if messages is not None:
            if any(x is not None for x in (images, videos, audio, video_audio)):
                raise InputError("with messages, media come from the content items; do not also pass media lists")
            texts, images, videos, audio, video_audio = self._from_conversations(messages, add_generation_prompt,
                                                                                 use_audio_in_video)
        else:
            texts = [text] if isinstance(text, str) else list(text)
            if not texts or not all(isinstance(t, str) for t in texts):
                raise InputError("text must be a string or a non-empty list of strings")
            images, videos, audio = _flat(images, "image"), _flat(videos, "video"), _flat(audio, "audio")
            video_audio = _flat(video_audio, "audio") if video_audio is not None else None
        self._check_counts(texts, images, videos, audio)
        if use_audio_in_video and video_audio is None:
            video_audio = [self._audio_of_video(v) for v in videos]
        if not use_audio_in_video:
            video_audio = None
        elif len(video_audio) != len(videos):
            raise InputError(f"video_audio has {len(video_audio)} entries for {len(videos)} videos; give one "
                             "waveform (or None for a silent video) per video")

        batch = {}
        image_tokens = self._images(images, batch)
        video_grids = self._videos(videos, batch)
        # audio of every item that has some, in the order the items appear in the prompts
        order = self._audio_order(texts, audio, video_audio)
        audio_tokens = self._audio([wave for _, wave in order], batch)
        per_slot = dict(zip((key for key, _ in order), audio_tokens))
        expanded = self._expand(texts, image_tokens, video_grids, per_slot, batch)
        batch.update(self._tokenize(expanded, padding_side, return_labels))
        return {k: batch[k] for k in _KEY_ORDER if k in batch}

    # ------------------------------------------------------------------ prompts and media lists
    def _from_conversations(self, messages, add_generation_prompt: bool, use_audio_in_video: bool):
        if isinstance(messages, (list, tuple)) and messages and isinstance(messages[0], dict):
            messages = [messages]  # one conversation
        if not isinstance(messages, (list, tuple)) or not messages:
            raise InputError("messages must be a conversation or a non-empty list of conversations")
        texts, media = [], {kind: [] for kind in MEDIA_TYPES}
        video_audio = []
        for conversation in messages:
            conversation = check_messages(conversation)
            texts.append(render_chat(conversation, self.chat_template, add_generation_prompt=add_generation_prompt))
            for message in conversation:
                if isinstance(message.get("content"), (list, tuple)):
                    for item in message["content"]:
                        if item["type"] in media:
                            media[item["type"]].append(item[item["type"]])
                        if item["type"] == "video" and use_audio_in_video:
                            track = item.get("audio")
                            video_audio.append(track if track is not None else self._audio_of_video(item["video"]))
        return texts, media["image"], media["video"], media["audio"], (video_audio if use_audio_in_video else None)

    def _check_counts(self, texts, images, videos, audio) -> None:
        for name, token, items in (("image", self.image_token, images), ("video", self.video_token, videos),
                                   ("audio", self.audio_token, audio)):
            n = sum(t.count(token) for t in texts)
            if n != len(items):
                raise InputError(f"the prompts hold {n} {name} placeholder(s) ({token}) but {len(items)} {name} "
                                 f"input(s) were given; give exactly one {name} per placeholder")

    def _audio_order(self, texts, audio, video_audio) -> list[tuple[tuple[str, int], object]]:
        """((kind, index), waveform) for every item with sound, in prompt order: the feature order the model
        scatters audio embeddings in."""
        order, counters = [], {self.audio_token: 0, self.video_token: 0, self.image_token: 0}
        for t in texts:
            for m in self._placeholder.finditer(t):
                i = counters[m.group()]
                counters[m.group()] += 1
                if m.group() == self.audio_token:
                    order.append((("audio", i), audio[i]))
                elif m.group() == self.video_token and video_audio is not None and video_audio[i] is not None:
                    order.append((("video", i), video_audio[i]))
        return order

    def _expand(self, texts, image_tokens, video_grids, audio_tokens, batch) -> list[str]:
        """Replace each placeholder by its full run of tokens (item counters run across the whole batch)."""
        counters = {self.audio_token: 0, self.video_token: 0, self.image_token: 0}
        seconds = batch.get("video_second_per_grid")

        def replace(m):
            token = m.group()
            i = counters[token]
            counters[token] += 1
            if token == self.image_token:
                return token * image_tokens[i]
            if token == self.audio_token:
                return token * audio_tokens[("audio", i)]
            grid = video_grids[i]
            if ("video", i) not in audio_tokens:
                return token * (int(grid[0]) * int(grid[1]) * int(grid[2]) // self.merge_size ** 2)
            if self.model_type == "qwen2_5_omni":
                pieces = interleave_video_audio_chunks(grid, audio_tokens[("video", i)], float(seconds[i]),
                                                       self.position_id_per_seconds, self.merge_size,
                                                       self.seconds_per_chunk, token, self.audio_token)
            else:
                pieces = interleave_video_audio(grid, audio_tokens[("video", i)], float(seconds[i]),
                                                self.position_id_per_seconds, self.merge_size, token, self.audio_token)
            return self.audio_start + "".join(pieces) + self.audio_end

        return [self._placeholder.sub(replace, t) for t in texts]

    # ------------------------------------------------------------------ tokens, padding, labels
    def _tokenize(self, texts, padding_side: str, return_labels: bool) -> dict:
        rows, label_rows = [], []
        for text in texts:
            ids, offsets = self.tokenizer.encode_with_offsets(text)
            rows.append(ids)
            if return_labels:
                label_rows.append(self._labels(text, ids, offsets))
        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
        for b, ids in enumerate(rows):
            cols = slice(width - len(ids), width) if padding_side == "left" else slice(0, len(ids))
            input_ids[b, cols] = torch.tensor(ids, dtype=torch.long)
            attention[b, cols] = 1
            if return_labels:
                labels[b, cols] = torch.tensor(label_rows[b], dtype=torch.long)
        out = {"input_ids": input_ids, "attention_mask": attention}
        if return_labels:
            out["labels"] = labels
        return out

    def _labels(self, text: str, ids: list[int], offsets) -> list[int]:
        """Keep the tokens of each assistant reply (its text and closing <|im_end|>); mask everything else."""
        im_start, im_end = self.tokenizer.token("im_start"), self.tokenizer.token("im_end")
        head = im_start + "assistant\n"
        spans, pos = [], 0
        while (start := text.find(head, pos)) >= 0:
            start += len(head)
            end = text.find(im_end, start)
            end = len(text) if end < 0 else end + len(im_end)
            spans.append((start, end))
            pos = end
        labels = [IGNORE_INDEX] * len(ids)
        for k, (a, b) in enumerate(offsets):
            if any(s <= a and b <= e for s, e in spans) and b > a:
                labels[k] = ids[k]
        return labels

    # ------------------------------------------------------------------ media (omni.tokenizers.image/video/audio)
    def _images(self, images, batch) -> list[int]:
        if not images:
            return []
        image = _media_module("image")
        out = image.preprocess_images(images, **{"merge_size": self.merge_size, **self.image_options})
        batch["pixel_values"], batch["image_grid_thw"] = out["pixel_values"], out["image_grid_thw"]
        return [image.num_vision_tokens(g, self.merge_size) for g in out["image_grid_thw"]]

    def _videos(self, videos, batch) -> list:
        if not videos:
            return []
        video = _media_module("video")
        options = {"merge_size": self.merge_size, **self.video_options}
        if self.video_fps is not None:
            options.setdefault("fps", self.video_fps)
        # video_second_per_grid = temporal_patch_size / fps, with the official 1.0 fps when none is given
        out = video.preprocess_videos(videos, **options)
        for key in ("pixel_values_videos", "video_grid_thw", "video_second_per_grid"):
            batch[key] = out[key]
        return [tuple(int(x) for x in g) for g in out["video_grid_thw"]]

    def _audio(self, waves, batch) -> list[int]:
        if not waves:
            return []
        feats = _media_module("audio_features")
        out = feats.log_mel_features([self._waveform(w, feats) for w in waves], **self.audio_options)
        batch["input_features"], batch["feature_attention_mask"] = out["input_features"], out["feature_attention_mask"]
        frames = out["feature_attention_mask"].sum(-1).long()
        if self.model_type == "qwen2_5_omni":
            return [int(n) for n in pooled_audio_token_count(frames)]
        return [int(n) for n in audio_token_count(frames, self.n_window)]

    def _waveform(self, wave, feats):
        """Files and (array, rate) pairs are decoded / resampled to 16 kHz; bare arrays are at `sampling_rate`."""
        if isinstance(wave, (str, os.PathLike, tuple)):
            return feats.load_audio(wave, sr=feats.SAMPLE_RATE)
        if self.sampling_rate != feats.SAMPLE_RATE:
            return feats.load_audio(wave, sr=feats.SAMPLE_RATE, orig_sr=self.sampling_rate)
        return wave

    def _audio_of_video(self, video):
        if isinstance(video, (str, os.PathLike)):
            feats = _media_module("audio_features")
            return feats.load_audio(video, sr=feats.SAMPLE_RATE)
        raise InputError("use_audio_in_video needs each video's sound track: pass the video as a file path, or give "
                         "the waveform with the item ({'type': 'video', 'video': frames, 'audio': waveform}) or as "
                         "video_audio=[...]")


_KEY_ORDER = ("input_ids", "attention_mask", "labels", "pixel_values", "image_grid_thw", "pixel_values_videos",
              "video_grid_thw", "video_second_per_grid", "input_features", "feature_attention_mask")


def _media_module(name: str):
    import importlib

    try:
        return importlib.import_module(f"omni.tokenizers.{name}")
    except ModuleNotFoundError as e:
        if e.name != f"omni.tokenizers.{name}":
            raise
        kind = {"image": "images", "video": "videos", "audio_features": "audio"}[name]
        raise InputError(f"{kind} are not supported in this build: omni.tokenizers.{name} is not available") from None



# preprocessor_config.json keys each media function takes. Video pixel bounds are deliberately absent: the
# official processor always overrides them with its own per-frame bounds (the defaults of preprocess_videos).
_IMAGE_KEYS = ("patch_size", "merge_size", "temporal_patch_size", "min_pixels", "max_pixels", "image_mean",
               "image_std")
_VIDEO_KEYS = ("patch_size", "merge_size", "temporal_patch_size", "image_mean", "image_std")


def _media_options(directory: str) -> dict:
    """image_options / video_options from preprocessor_config.json (+ video_preprocessor_config.json)."""
    found = {}
    for name in ("preprocessor_config.json", "video_preprocessor_config.json"):
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            try:
                with open(path, encoding="utf-8") as f:
                    found[name] = json.load(f)
            except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
                raise ConfigError(f"cannot read {path}: {e}") from None
    pre = dict(found.get("preprocessor_config.json", {}))
    size = pre.get("size") or {}
    if isinstance(size, dict):  # newer files keep the pixel bounds as size.shortest_edge / size.longest_edge
        pre.setdefault("min_pixels", size.get("shortest_edge"))
        pre.setdefault("max_pixels", size.get("longest_edge"))
    video = {**pre, **found.get("video_preprocessor_config.json", {})}
    options = {}
    image_options = {k: pre[k] for k in _IMAGE_KEYS if pre.get(k) is not None}
    video_options = {k: video[k] for k in _VIDEO_KEYS if video.get(k) is not None}
    from .tokenizers.image import check_media_options

    video_file = next((n for n in ("video_preprocessor_config.json", "preprocessor_config.json") if n in found),
                      "preprocessor_config.json")
    for name, opts in (("preprocessor_config.json", image_options), (video_file, video_options)):
        check_media_options(os.path.join(directory, name), opts)
    if image_options:
        options["image_options"] = image_options
    if video_options:
        options["video_options"] = video_options
    return options

