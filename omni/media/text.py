"""Text tokenizer for the Qwen omni models: byte-level BPE, special tokens by name, streaming decode.

Qwen ships its tokenizer in two equivalent forms: ``tokenizer.json`` (a complete `tokenizers` pipeline) and the
older ``vocab.json`` + ``merges.txt`` pair. `TextTokenizer.from_pretrained` prefers ``tokenizer.json`` and
otherwise builds the same pipeline from the pair:

    NFC normalisation -> split with Qwen's pre-tokenizer regex -> byte-level symbols -> BPE merges

The regex keeps contractions, letter runs (with one optional leading non-letter), *single* digits, punctuation
runs, newline runs and whitespace apart, so numbers are always tokenised digit by digit. No BOS token is ever
added. Added tokens (``<|im_start|>``, ``<|audio_pad|>``...) and whether each is "special" (dropped by
``decode(skip_special_tokens=True)``) come from ``tokenizer_config.json``'s ``added_tokens_decoder``.

The model refers to a handful of these tokens by id in ``config.json`` (placeholders, chat markers, TTS markers).
`SPECIAL_TOKENS` names them; `TextTokenizer.check_config` makes sure the tokenizer and the config agree, because a
mismatch silently feeds media embeddings into the wrong positions.

`StreamDecoder` turns a stream of generated ids into text pieces, holding back output while the last token ends
inside a multi-byte UTF-8 character (byte-level BPE splits characters such as emoji across tokens).
"""

from __future__ import annotations

import json
import os

from ..errors import ConfigError, InputError
from ..files import atomic_write

# Qwen's pre-tokenizer split (Qwen2 family; the same regex ships in Qwen3-Omni's tokenizer files).
QWEN_PRETOKENIZE_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# Short names for the tokens the model and the processor use, with the Qwen3-Omni strings.
SPECIAL_TOKENS = {
    "endoftext": "<|endoftext|>",
    "im_start": "<|im_start|>",
    "im_end": "<|im_end|>",
    "vision_start": "<|vision_start|>",
    "vision_end": "<|vision_end|>",
    "image_pad": "<|image_pad|>",
    "video_pad": "<|video_pad|>",
    "audio_start": "<|audio_start|>",
    "audio_end": "<|audio_end|>",
    "audio_pad": "<|audio_pad|>",
    "tts_pad": "<tts_pad>",
    "tts_bos": "<tts_text_bos>",
    "tts_eos": "<tts_text_eod>",
    "tts_bos_single": "<tts_text_bos_single>",
}
# tokenizer_config.json keys that may rename a placeholder (the processor reads its tokens from these)
_CONFIG_KEYS = {
    "audio_start": "audio_bos_token", "audio_end": "audio_eos_token", "audio_pad": "audio_token",
    "vision_start": "vision_bos_token", "vision_end": "vision_eos_token",
    "image_pad": "image_token", "video_pad": "video_token",
}
# (name, where in config.json, key): the ids config.json expects, checked by `check_config`
_CONFIG_IDS = [
    ("im_start", "", "im_start_token_id"), ("im_end", "", "im_end_token_id"),
    ("tts_pad", "", "tts_pad_token_id"), ("tts_bos", "", "tts_bos_token_id"), ("tts_eos", "", "tts_eos_token_id"),
    ("audio_pad", "thinker_config", "audio_token_id"), ("image_pad", "thinker_config", "image_token_id"),
    ("video_pad", "thinker_config", "video_token_id"), ("audio_start", "thinker_config", "audio_start_token_id"),
    ("vision_start", "thinker_config", "vision_start_token_id"),
]
# role words the talker looks for; each must be a single token
_ROLE_IDS = [("system", "system_token_id"), ("user", "user_token_id"), ("assistant", "assistant_token_id")]


def _content(token) -> str | None:
    """A token entry in tokenizer_config.json is a string or an AddedToken-like dict."""
    if token is None or isinstance(token, str):
        return token
    if isinstance(token, dict) and isinstance(token.get("content"), str):
        return token["content"]
    raise ConfigError(f"tokenizer_config.json: cannot read token entry {token!r}; expected a string or "
                      "{'content': ...}")


def _read_json(path: str, what: str):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read {what} {path}: {e}") from None


def _build_bpe(vocab_file: str, merges_file: str):
    """The Qwen BPE pipeline from vocab.json + merges.txt (what tokenizer.json would contain)."""
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers
    from tokenizers.models import BPE

    vocab = _read_json(vocab_file, "vocabulary")
    merges = []
    with open(merges_file, encoding="utf-8") as f:
        for n, line in enumerate(f):
            line = line.rstrip("\r\n")
            if not line or (n == 0 and line.startswith("#version")):
                continue
            parts = line.split(" ")
            if len(parts) != 2:
                raise ConfigError(f"{merges_file} line {n + 1}: expected two symbols, got {line!r}")
            merges.append((parts[0], parts[1]))
    tok = Tokenizer(BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_PRETOKENIZE_REGEX), behavior="isolated"),
        # the regex has already split the text: ByteLevel only maps bytes to symbols here
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    return tok


class TextTokenizer:
    """Qwen byte-level BPE tokenizer with its added tokens, special-token names and chat template.

    ``tokenizer.encode("hi") -> [ids]``, ``tokenizer.decode(ids, skip_special_tokens=True) -> str``,
    ``tokenizer.token_id("audio_pad")`` (a `SPECIAL_TOKENS` name or any token string),
    ``tokenizer.apply_chat_template(messages)`` (see `omni.media.chat`).
    """

    def __init__(self, backend, *, eos_token: str = "<|endoftext|>", pad_token: str = "<|endoftext|>",
                 special_tokens: dict[str, str] | None = None, chat_template: str | None = None):
        self.backend = backend  # a `tokenizers.Tokenizer`
        self.tokens = {**SPECIAL_TOKENS, **(special_tokens or {})}
        self.chat_template = chat_template
        self.eos_token, self.pad_token = eos_token, pad_token
        self.eos_token_id = self.id_of(eos_token)
        self.pad_token_id = self.id_of(pad_token)
        # ids that decode(skip_special_tokens=True) drops: the added tokens marked special
        self.special_ids = frozenset(i for i, t in backend.get_added_tokens_decoder().items() if t.special)

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, config=None) -> "TextTokenizer":
        """Load the tokenizer files of a checkpoint directory; with `config` (an `OmniConfig` or the config.json
        dict, or True to read ``directory/config.json``), check that the special-token ids agree with it."""
        from tokenizers import AddedToken, Tokenizer

        directory = os.fspath(directory)
        if not os.path.isdir(directory):
            raise ConfigError(f"tokenizer directory {directory!r} does not exist")
        file = lambda name: os.path.join(directory, name)  # noqa: E731
        tok_cfg = _read_json(file("tokenizer_config.json"), "tokenizer config") \
            if os.path.isfile(file("tokenizer_config.json")) else {}
        if os.path.isfile(file("tokenizer.json")):
            try:
                backend = Tokenizer.from_file(file("tokenizer.json"))
            except Exception as e:  # the Rust loader raises plain Exceptions
                raise ConfigError(f"cannot load {file('tokenizer.json')}: {e}") from None
        elif os.path.isfile(file("vocab.json")) and os.path.isfile(file("merges.txt")):
            backend = _build_bpe(file("vocab.json"), file("merges.txt"))
        else:
            raise ConfigError(
                f"no tokenizer in {directory!r}: expected tokenizer.json, or vocab.json + merges.txt "
                "(copy them from the official checkpoint)"
            )

        # added tokens, in id order so each lands on the id the config names
        decoder = tok_cfg.get("added_tokens_decoder") or {}
        for idx in sorted(decoder, key=int):
            entry = decoder[idx]
            content = _content(entry)
            have = backend.token_to_id(content)
            if have is not None:
                if have != int(idx):
                    raise ConfigError(f"tokenizer_config.json puts {content!r} at id {idx}, but the vocabulary "
                                      f"has it at {have}; the tokenizer files come from different releases")
                continue
            if backend.get_vocab_size(with_added_tokens=True) != int(idx):
                raise ConfigError(f"tokenizer_config.json adds {content!r} at id {idx}, but the next free id is "
                                  f"{backend.get_vocab_size(with_added_tokens=True)}; ids must be contiguous")
            flags = {k: bool(entry.get(k, False)) for k in ("single_word", "lstrip", "rstrip")} \
                if isinstance(entry, dict) else {}
            special = bool(entry.get("special", True)) if isinstance(entry, dict) else True
            normalized = bool(entry.get("normalized", not special)) if isinstance(entry, dict) else False
            token = AddedToken(content, special=special, normalized=normalized, **flags)
            (backend.add_special_tokens if special else backend.add_tokens)([token])

        names = dict(SPECIAL_TOKENS)
        # placeholder strings may be renamed at the top level or in one of the extra-token maps
        extra = {}
        for key in ("extra_special_tokens", "model_specific_special_tokens"):
            if isinstance(tok_cfg.get(key), dict):
                extra.update(tok_cfg[key])
        for name, key in _CONFIG_KEYS.items():
            value = tok_cfg.get(key, extra.get(key))
            if value is not None:
                names[name] = _content(value)

        template = tok_cfg.get("chat_template")
        if isinstance(template, list):  # named templates: [{"name": "default", "template": ...}, ...]
            template = next((t.get("template") for t in template if t.get("name") == "default"), None)
        tok = cls(backend, eos_token=_content(tok_cfg.get("eos_token")) or "<|endoftext|>",
                  pad_token=_content(tok_cfg.get("pad_token")) or "<|endoftext|>", special_tokens=names,
                  chat_template=template)
        if config is True:
            config = os.path.join(directory, "config.json")
        if config is not None:
            tok.check_config(config)
        return tok

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write tokenizer.json and tokenizer_config.json (added tokens, eos/pad, placeholder names, template)."""
        directory = os.fspath(directory)
        os.makedirs(directory, exist_ok=True)
        with atomic_write(os.path.join(directory, "tokenizer.json")) as f:
            f.write(self.backend.to_str(pretty=True))
        added = {
            str(i): {"content": t.content, "lstrip": t.lstrip, "normalized": t.normalized, "rstrip": t.rstrip,
                     "single_word": t.single_word, "special": t.special}
            for i, t in sorted(self.backend.get_added_tokens_decoder().items())
        }
        config = {"tokenizer_class": "Qwen2Tokenizer", "bos_token": None, "eos_token": self.eos_token,
                  "pad_token": self.pad_token, "clean_up_tokenization_spaces": False, "added_tokens_decoder": added,
                  "extra_special_tokens": {key: self.tokens[name] for name, key in _CONFIG_KEYS.items()}}
        if self.chat_template:
            config["chat_template"] = self.chat_template
        with atomic_write(os.path.join(directory, "tokenizer_config.json")) as f:
            json.dump(config, f, indent=2, ensure_ascii=False)

    # ------------------------------------------------------------------ ids
    def id_of(self, token: str) -> int:
        """The id of one exact token string (an added token or a vocabulary entry)."""
        i = self.backend.token_to_id(token)
        if i is None:
            raise ConfigError(f"token {token!r} is not in the tokenizer's vocabulary; are these the Qwen-Omni "
                              "tokenizer files?")
        return i

    def token(self, name: str) -> str:
        """The string of a named special token (`SPECIAL_TOKENS` key), e.g. "audio_pad" -> "<|audio_pad|>"."""
        if name not in self.tokens:
            raise InputError(f"unknown special token name {name!r}; known: {sorted(self.tokens)}")
        return self.tokens[name]

    def token_id(self, name: str) -> int:
        """The id of a named special token ("im_start", "audio_pad", ...) or of a literal token string."""
        return self.id_of(self.tokens.get(name, name))

    def __len__(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def check_config(self, config) -> None:
        """Raise ConfigError where config.json's token ids disagree with this tokenizer.

        `config`: an `OmniConfig`, the config.json dict, or a path to config.json / its directory."""
        if isinstance(config, (str, os.PathLike)):
            path = os.fspath(config)
            path = os.path.join(path, "config.json") if os.path.isdir(path) else path
            if not os.path.isfile(path):
                raise ConfigError(f"no config.json at {path!r} to check the tokenizer against")
            config = _read_json(path, "config")
        if not isinstance(config, dict):
            config = config.to_dict()
        wrong = []
        for name, section, key in _CONFIG_IDS:
            block = config.get(section) if section else config
            if not isinstance(block, dict) or key not in block:
                continue  # not written in this config: nothing to disagree with
            have = self.token_id(name)
            if block[key] != have:
                wrong.append(f"{(section + '.') if section else ''}{key}={block[key]} but "
                             f"{self.tokens[name]!r} is {have}")
        for word, key in _ROLE_IDS:
            if key in config:
                ids = self.encode(word)
                if ids != [config[key]]:
                    wrong.append(f"{key}={config[key]} but {word!r} encodes to {ids}")
        if wrong:
            raise ConfigError("the tokenizer does not match config.json: " + "; ".join(wrong)
                              + ". Use the tokenizer files that ship with this checkpoint.")

    # ------------------------------------------------------------------ text <-> ids
    def encode(self, text: str) -> list[int]:
        """Token ids of `text`; special-token strings in it become their single ids. No BOS/EOS is added."""
        if not isinstance(text, str):
            raise InputError(f"encode() takes a string, got {type(text).__name__}")
        return self.backend.encode(text, add_special_tokens=True).ids

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Ids and the (start, end) character span of each token in `text`."""
        enc = self.backend.encode(text, add_special_tokens=True)
        return enc.ids, enc.offsets

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        """Text of `ids` (a list, or a 1-D tensor/array); special tokens dropped with skip_special_tokens.

        Ids past the tokenizer (the model's embedding has spare rows beyond it, which sampling can still pick)
        decode to nothing, as in the reference tokenizer."""
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        ids = [int(i) for i in ids]
        if any(i < 0 for i in ids):
            raise InputError(f"cannot decode negative ids {[i for i in ids if i < 0][:5]}; token ids start at 0")
        return self.backend.decode(ids, skip_special_tokens=skip_special_tokens)

    def batch_decode(self, rows, skip_special_tokens: bool = False) -> list[str]:
        """`decode` of each row of ids (a list of lists or a (B, N) tensor)."""
        return [self.decode(r, skip_special_tokens=skip_special_tokens) for r in rows]

    # ------------------------------------------------------------------ chat
    def apply_chat_template(self, messages, *, add_generation_prompt: bool = True, chat_template: str | None = None,
                            **kwargs) -> str:
        """Render a conversation to the prompt string (checkpoint template if shipped, else the built-in one)."""
        from .chat import render_chat

        return render_chat(messages, chat_template or self.chat_template, add_generation_prompt=add_generation_prompt,
                           special_tokens={"eos_token": self.eos_token, "pad_token": self.pad_token}, **kwargs)


class StreamDecoder:
    """Incremental detokenizer: ``push(id)`` returns the new text, or "" while a character is incomplete.

    It decodes a short window of recent tokens (the last emitted ones give context, so byte-level pieces join
    correctly) and only emits once the window no longer ends in the U+FFFD replacement character that an
    unfinished UTF-8 sequence decodes to. ``flush()`` returns whatever is left at the end of the stream.
    """

    def __init__(self, tokenizer: TextTokenizer, skip_special_tokens: bool = True):
        self.tokenizer = tokenizer
        self.skip_special_tokens = skip_special_tokens
        self.ids: list[int] = []
        self.prefix = 0  # window start: tokens before it are settled
        self.read = 0  # tokens up to here have been emitted

    def _text(self, start: int, end: int) -> str:
        return self.tokenizer.decode(self.ids[start:end], skip_special_tokens=self.skip_special_tokens)

    def push(self, token_id: int) -> str:
        self.ids.append(int(token_id))
        done = self._text(self.prefix, self.read)
        full = self._text(self.prefix, len(self.ids))
        if full.endswith("\ufffd") or len(full) <= len(done):
            return ""  # mid-character (or nothing visible yet): wait for more bytes
        self.prefix, self.read = self.read, len(self.ids)
        return full[len(done):]

    def flush(self) -> str:
        """Text not yet returned (an unfinished character comes out as U+FFFD, as a full decode would)."""
        done = self._text(self.prefix, self.read)
        full = self._text(self.prefix, len(self.ids))
        self.prefix = self.read = len(self.ids)
        return full[len(done):]
