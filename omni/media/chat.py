"""Chat template: a conversation -> the prompt string the Thinker was trained on (ChatML with media placeholders).

A conversation is a list of messages ``{"role": "system" | "user" | "assistant" | ..., "content": str | items}``
where items are ``{"type": "text", "text": ...}``, ``{"type": "image", "image": ...}``,
``{"type": "audio", "audio": ...}`` or ``{"type": "video", "video": ...}``. Each media item becomes one wrapped
placeholder which the processor later expands to the real number of tokens:

    image -> <|vision_start|><|image_pad|><|vision_end|>
    audio -> <|audio_start|><|audio_pad|><|audio_end|>
    video -> <|vision_start|><|video_pad|><|vision_end|>

Which template: the one shipped with the checkpoint when there is one (``chat_template.jinja``, then
``chat_template.json``, then ``tokenizer_config.json["chat_template"]``), rendered with jinja2 in a sandbox set up
like the reference (trim_blocks, lstrip_blocks, loop controls, ``raise_exception``, a non-escaping ``tojson``).

The built-in fallback, `BUILTIN_TEMPLATE`, is NOT the official Qwen3-Omni template text: that text is not in the
installed reference package (the checkpoint ships it as chat_template.json). It is written from the documented
prompt format (ARCHITECTURE_FACTS §8): ChatML turns ``<|im_start|>{role}\\n{content}<|im_end|>\\n``, no default
system message, items rendered in order with the placeholders above and nothing between them, and
``<|im_start|>assistant\\n`` as the generation prompt. It does not reproduce the official template's tool-calling
and ``<think>`` handling; a checkpoint's own template always takes precedence.
"""

from __future__ import annotations

import json
import os
from datetime import datetime

from ..errors import ConfigError, InputError

BUILTIN_TEMPLATE = (
    "{%- macro render_content(content) -%}"
    "{%- if content is string -%}{{- content -}}"
    "{%- elif content is not none -%}"
    "{%- for item in content -%}"
    "{%- if item.type == 'text' -%}{{- item.text -}}"
    "{%- elif item.type == 'image' -%}{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
    "{%- elif item.type == 'audio' -%}{{- '<|audio_start|><|audio_pad|><|audio_end|>' -}}"
    "{%- elif item.type == 'video' -%}{{- '<|vision_start|><|video_pad|><|vision_end|>' -}}"
    "{%- else -%}{{- raise_exception('unsupported content item type: ' ~ item.type) -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{%- endmacro -%}"
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message.role + '\\n' -}}"
    "{{- render_content(message.content) -}}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)

MEDIA_TYPES = ("image", "audio", "video")
_ITEM_TYPES = ("text",) + MEDIA_TYPES


def load_chat_template(directory: str | os.PathLike) -> str | None:
    """The chat template shipped in a checkpoint directory, or None when it ships none."""
    directory = os.fspath(directory)
    jinja = os.path.join(directory, "chat_template.jinja")
    if os.path.isfile(jinja):
        try:
            with open(jinja, encoding="utf-8") as f:
                return f.read()
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"cannot read the chat template {jinja}: {e}") from None
    for name in ("chat_template.json", "tokenizer_config.json"):
        path = os.path.join(directory, name)
        if not os.path.isfile(path):
            continue
        try:
            with open(path, encoding="utf-8") as f:
                template = json.load(f).get("chat_template")
        except (OSError, json.JSONDecodeError, UnicodeDecodeError, AttributeError) as e:
            raise ConfigError(f"cannot read the chat template in {path}: {e}") from None
        if isinstance(template, list):  # named templates: take the default one
            template = next((t.get("template") for t in template if t.get("name") == "default"), None)
        if template:
            return template
    return None


def _environment():
    import jinja2
    from jinja2.ext import Extension, loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class _Generation(Extension):
        """`{% generation %}...{% endgeneration %}` marks assistant text for training masks; render the body."""

        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

        def _body(self, caller):
            return caller()

    def raise_exception(message):
        raise InputError(f"chat template: {message}")

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        # jinja's own tojson HTML-escapes; templates expect plain JSON
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[_Generation, loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env


_COMPILED: dict[str, object] = {}


def _compile(template: str):
    if template not in _COMPILED:
        import jinja2

        try:
            _COMPILED[template] = _environment().from_string(template)
        except jinja2.TemplateError as e:
            raise ConfigError(f"the chat template does not parse: {e}") from None
    return _COMPILED[template]


def check_chat_template(template: str) -> None:
    """Raise ConfigError now when `template` does not parse, rather than at the first conversation."""
    _compile(template)


def check_messages(messages) -> list[dict]:
    """Validate one conversation; returns it as a list of dicts."""
    if not isinstance(messages, (list, tuple)) or not messages:
        raise InputError("a conversation is a non-empty list of {'role': ..., 'content': ...} messages")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise InputError(f"message {i} must be a dict with a string 'role', got {m!r:.80}")
        content = m.get("content")
        if content is None or isinstance(content, str):
            continue
        if not isinstance(content, (list, tuple)):
            raise InputError(f"message {i}: content must be a string or a list of items, got {type(content).__name__}")
        for j, item in enumerate(content):
            kind = item.get("type") if isinstance(item, dict) else None
            if kind not in _ITEM_TYPES:
                raise InputError(f"message {i} item {j}: expected a dict with 'type' in {list(_ITEM_TYPES)}, "
                                 f"got {item!r:.80}")
            if kind == "text" and not isinstance(item.get("text"), str):
                raise InputError(f"message {i} item {j}: a text item needs a string 'text'")
            if kind != "text" and item.get(kind) is None:
                raise InputError(f"message {i} item {j}: a {kind} item needs its data under the key {kind!r}")
    return list(messages)


def _for_template(messages: list[dict]) -> list[dict]:
    """Plain-data copy for the template: media payloads (arrays, images, paths) become an inert marker, and only
    the standard keys of an item are kept (templates test which keys an item has)."""
    out = []
    for m in messages:
        m = dict(m)
        if isinstance(m.get("content"), (list, tuple)):
            items = []
            for item in m["content"]:
                kind = item["type"]
                value = item["text"] if kind == "text" else f"<{kind}>"
                items.append({"type": kind, kind: value})
            m["content"] = items
        out.append(m)
    return out


def render_chat(messages, template: str | None = None, *, add_generation_prompt: bool = True,
                special_tokens: dict | None = None, **kwargs) -> str:
    """Render one conversation to its prompt string; `kwargs` reach the template (tools, enable_thinking...)."""
    messages = check_messages(messages)
    compiled = _compile(template or BUILTIN_TEMPLATE)
    import jinja2

    try:
        return compiled.render(messages=_for_template(messages), add_generation_prompt=add_generation_prompt,
                               **{**(special_tokens or {}), **kwargs})
    except jinja2.exceptions.SecurityError as e:  # the sandbox stopped it: the template is hostile or broken
        raise ConfigError(f"the chat template tried an unsafe operation ({e}); refusing to run it: replace the "
                          "checkpoint's chat template with a trusted one") from None
    except jinja2.TemplateError as e:
        raise ConfigError(f"the chat template failed while rendering this conversation: {e}") from None
