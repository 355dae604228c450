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
   ``<|audio_start|>`` + video and audio placeholders interleaved + ``<|audio_end|>`` (omni.interleave), so
   the prompt reads vision_start, audio_start, ..., audio_end, vision_end.
4. Tokenise and pad the batch (left for generation, right for training) with attention masks; optionally build
   training labels where everything but the assistant replies is -100.

What differs between releases comes from the release's record (omni.release, picked by ``model_type``): its
`processor_defaults` (Qwen2.5-Omni: 25 positions per second, audio padded and cut to 30 s, videos assumed at 2 fps
when no rate is given, 14-pixel patches normalised with the CLIP mean / std), its `audio_token_count` and its
audio-in-video interleaving rule.

The keys and layouts are those of the official processor: input_ids, attention_mask, pixel_values,
image_grid_thw, pixel_values_videos, video_grid_thw, video_second_per_grid, input_features,
feature_attention_mask (media keys only when that medium is present).
"""

from __future__ import annotations

import json
import os
import re

import torch

from ..checks import boolean, integer, number, string
from ..errors import ConfigError, InputError
from ..files import atomic_write
from ..interleave import interleave_tokens_by_chunks, interleave_tokens_by_time
from ..release import release_of
from .chat import MEDIA_TYPES, check_chat_template, check_messages, load_chat_template, render_chat
from .text import TextTokenizer

IGNORE_INDEX = -100  # label value the loss skips
PREPROCESS = ("card", "processor")  # the model cards' flow, the bare official processor


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

    Options (None: the release's default, `Release.processor_defaults`): ``preprocess`` ("card": the model cards'
    qwen-omni-utils + processor flow; "processor": the bare processor; docs/positions.md), ``resize_backend``
    ("torch": torchvision's kernel, the processors' default; "pil"), ``merge_size``, ``n_window`` (audio chunk
    half-size in frames), ``position_id_per_seconds``, ``video_fps`` (the rate the processor is told; with
    "processor" it also samples files), ``sampling_rate`` of bare audio arrays, and keyword dicts ``image_options``,
    ``video_options``, ``audio_options`` for the media functions (on top of the release's). ``model_type`` picks
    the release; ``seconds_per_chunk`` is the audio-in-video chunk of a release that interleaves by chunks.
    """

    def __init__(self, tokenizer: TextTokenizer, *, chat_template: str | None = None, merge_size: int = 2,
                 n_window: int | None = None, position_id_per_seconds: float | None = None,
                 video_fps: float | None = None, sampling_rate: int = 16000, image_options: dict | None = None,
                 video_options: dict | None = None, audio_options: dict | None = None,
                 model_type: str = "qwen3_omni_moe", seconds_per_chunk: float = 2.0, preprocess: str = "card",
                 resize_backend: str = "torch"):
        if not isinstance(tokenizer, TextTokenizer):
            raise ConfigError(f"Processor needs an omni TextTokenizer, got {type(tokenizer).__name__}")
        release = release_of(string("model_type", model_type, error=ConfigError))
        defaults = release.processor_defaults
        self.model_type, self.preprocess = model_type, string("preprocess", preprocess, PREPROCESS, ConfigError)
        self.resize_backend = string("resize_backend", resize_backend, ("torch", "pil"), ConfigError)
        self.audio_token_count, self.av_chunks = release.audio_token_count, release.time_rules.av_chunks
        options = {}
        for name, value in (("image_options", image_options), ("video_options", video_options),
                            ("audio_options", audio_options)):
            if value is not None and not isinstance(value, dict):
                raise ConfigError(f"{name} must be a dict of keyword options, got {type(value).__name__}")
            options[name] = {**defaults.get(name, {}), **(value or {})}
        self.image_options, self.video_options, self.audio_options = options.values()
        video_fps = defaults.get("video_fps") if video_fps is None else video_fps
        self.video_fps = None if video_fps is None else number("video_fps", video_fps, 0, low_open=True,
                                                                error=ConfigError)
        self.merge_size = integer("merge_size", merge_size, 1, error=ConfigError)
        self.n_window = integer("n_window", defaults["n_window"] if n_window is None else n_window, 1,
                                error=ConfigError)
        pps = defaults["position_id_per_seconds"] if position_id_per_seconds is None else position_id_per_seconds
        self.position_id_per_seconds = number("position_id_per_seconds", pps, 0, low_open=True, error=ConfigError)
        self.seconds_per_chunk = number("seconds_per_chunk", seconds_per_chunk, 0, low_open=True, error=ConfigError)
        self.sampling_rate = integer("sampling_rate", sampling_rate, 1, 1_000_000, error=ConfigError)
        if chat_template is not None and not isinstance(chat_template, str):
            raise ConfigError(f"chat_template must be a jinja template string, got {type(chat_template).__name__}")
        self.tokenizer = tokenizer
        self.chat_template = chat_template or tokenizer.chat_template
        if self.chat_template:
            check_chat_template(self.chat_template)  # a broken template fails at load, not at the first request
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
        options.update(_media_module("image").media_options(directory))
        samples = options.pop("audio_samples", None)
        release = release_of(options.get("model_type", "qwen3_omni_moe"))
        if samples is not None and "max_samples" in release.processor_defaults.get("audio_options", {}):
            options["audio_options"] = {"max_samples": samples}  # a release that pads / cuts audio: to the file's
        options.update(overrides)
        return cls(tokenizer, **options)

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write the tokenizer files and the chat template (chat_template.jinja) into `directory`."""
        directory = os.fspath(directory)
        self.tokenizer.save_pretrained(directory)
        if self.chat_template:
            with atomic_write(os.path.join(directory, "chat_template.jinja")) as f:
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
        if not isinstance(padding_side, str) or padding_side not in ("left", "right"):
            raise InputError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
        use_audio_in_video = boolean("use_audio_in_video", use_audio_in_video)
        add_generation_prompt = boolean("add_generation_prompt", add_generation_prompt)
        return_labels = boolean("return_labels", return_labels)
        if (messages is None) == (text is None):
            raise InputError("pass either messages (conversations) or text (prompt strings), not both or neither")
        if messages is not None:
            if any(x is not None for x in (images, videos, audio, video_audio)):
                raise InputError("with messages, media come from the content items; do not also pass media lists")
            texts, images, videos, audio, video_audio = self._from_conversations(messages, add_generation_prompt,
                                                                                 use_audio_in_video)
        else:
            texts = [text] if isinstance(text, str) else list(text) if isinstance(text, (list, tuple)) else None
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
            if self.av_chunks:
                pieces = interleave_tokens_by_chunks(grid, audio_tokens[("video", i)], float(seconds[i]),
                                                     self.position_id_per_seconds, self.merge_size,
                                                     self.seconds_per_chunk, token, self.audio_token)
            else:
                pieces = interleave_tokens_by_time(grid, audio_tokens[("video", i)], float(seconds[i]),
                                                   self.position_id_per_seconds, self.merge_size, token,
                                                   self.audio_token)
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

    # ------------------------------------------------------------------ media (omni.media.image / video / audio)
    def _images(self, images, batch) -> list[int]:
        if not images:
            return []
        image = _media_module("image")
        options = {"merge_size": self.merge_size, "card_resize_first": self.preprocess == "card",
                   "resize_backend": self.resize_backend, **self.image_options}
        out = image.preprocess_images(images, **options)
        batch["pixel_values"], batch["image_grid_thw"] = out["pixel_values"], out["image_grid_thw"]
        return [image.num_vision_tokens(g, self.merge_size) for g in out["image_grid_thw"]]

    def _videos(self, videos, batch) -> list:
        if not videos:
            return []
        video = _media_module("video")
        options = {"merge_size": self.merge_size, "pipeline": self.preprocess, "resize_backend": self.resize_backend,
                   **self.video_options}
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
        feats = _media_module("audio")
        out = feats.log_mel_features([self._waveform(w, feats) for w in waves], **self.audio_options)
        batch["input_features"], batch["feature_attention_mask"] = out["input_features"], out["feature_attention_mask"]
        frames = out["feature_attention_mask"].sum(-1).long()
        return [int(n) for n in self.audio_token_count(frames, self.n_window)]

    def _waveform(self, wave, feats):
        """Files and (array, rate) pairs are decoded / resampled to 16 kHz; bare arrays are at `sampling_rate`."""
        if isinstance(wave, (str, os.PathLike, tuple)):
            return feats.load_audio(wave, sr=feats.SAMPLE_RATE)
        if self.sampling_rate != feats.SAMPLE_RATE:
            return feats.load_audio(wave, sr=feats.SAMPLE_RATE, orig_sr=self.sampling_rate)
        return wave

    def _audio_of_video(self, video):
        if isinstance(video, (str, os.PathLike)):
            feats = _media_module("audio")
            return feats.load_audio(video, sr=feats.SAMPLE_RATE)
        raise InputError("use_audio_in_video needs each video's sound track: pass the video as a file path, or give "
                         "the waveform with the item ({'type': 'video', 'video': frames, 'audio': waveform}) or as "
                         "video_audio=[...]")


_KEY_ORDER = ("input_ids", "attention_mask", "labels", "pixel_values", "image_grid_thw", "pixel_values_videos",
              "video_grid_thw", "video_second_per_grid", "input_features", "feature_attention_mask")


def _media_module(name: str):
    import importlib

    try:
        return importlib.import_module(f"omni.media.{name}")
    except ModuleNotFoundError as e:
        if e.name != f"omni.media.{name}":
            raise
        kind = {"image": "images", "video": "videos", "audio": "audio"}[name]
        raise InputError(f"{kind} are not supported in this build: omni.media.{name} is not available") from None
