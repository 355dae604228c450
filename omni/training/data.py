"""Supervised fine-tuning data: conversations in a JSONL file, batched by omni.Processor with training labels.

One conversation per line, either a list of messages or an object with a "messages" list:

    {"messages": [{"role": "user", "content": [{"type": "audio", "audio": "clips/a.wav"},
                                               {"type": "text", "text": "What was said?"}]},
                  {"role": "assistant", "content": "Seven two nine."}]}

Relative media paths are resolved against the JSONL file's directory, so a data set can be moved as one folder.
Labels cover only the assistant replies (and their closing <|im_end|>); everything else is -100.
"""

from __future__ import annotations

import json
import os

from ..errors import InputError

MEDIA_KEYS = ("image", "audio", "video")


def read_conversations(path) -> list[list[dict]]:
    """Every conversation of a JSONL file, with media paths made absolute. InputError names the bad line."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(f"no data file at {path!r}")
    root = os.path.dirname(os.path.abspath(path))
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f"{path}:{n}: not valid JSON ({e})") from None
            messages = record.get("messages") if isinstance(record, dict) else record
            if not isinstance(messages, list) or not messages:
                raise InputError(f"{path}:{n}: expected a list of messages or {{\"messages\": [...]}}")
            if not any(isinstance(m, dict) and m.get("role") == "assistant" for m in messages):
                raise InputError(f"{path}:{n}: no assistant message, so nothing to learn from this line")
            out.append([_resolve(m, root, f"{path}:{n}") for m in messages])
    if not out:
        raise InputError(f"{path} holds no conversations")
    return out


def _resolve(message, root: str, where: str) -> dict:
    if not isinstance(message, dict):
        raise InputError(f"{where}: each message must be an object with role and content")
    content = message.get("content")
    if not isinstance(content, list):
        return message
    items = []
    for item in content:
        item = dict(item) if isinstance(item, dict) else item
        for key in MEDIA_KEYS:
            if isinstance(item, dict) and isinstance(item.get(key), str):
                item[key] = item[key] if os.path.isabs(item[key]) else os.path.join(root, item[key])
                if not os.path.exists(item[key]):
                    raise InputError(f"{where}: {key} file {item[key]!r} does not exist")
        items.append(item)
    return {**message, "content": items}


class Collator:
    """conversations -> a right-padded training batch (input_ids, attention_mask, labels, media tensors)."""

    def __init__(self, processor, max_length: int | None = None):
        self.processor = processor
        self.max_length = max_length

    def __call__(self, conversations: list[list[dict]]) -> dict:
        batch = self.processor(list(conversations), add_generation_prompt=False, padding_side="right",
                               return_labels=True)
        if self.max_length is not None and batch["input_ids"].shape[1] > self.max_length:
            raise InputError(
                f"a batch is {batch['input_ids'].shape[1]} tokens long, over max_length={self.max_length}; "
                "shorten the conversations (cutting would drop media placeholders and break the media alignment)"
            )
        return batch
