"""Media in, model inputs out: text tokenizer, chat template, image / video / audio preprocessing, Processor.

    text.py       TextTokenizer (Qwen's byte-level BPE through `tokenizers`), streaming decode
    chat.py       the chat template (sandboxed jinja), message checks
    image.py      images -> patch rows + grids (smart_resize, normalisation), preprocessor_config.json options
    video.py      videos -> frames -> patch rows + grids, seconds per grid
    audio.py      audio files / arrays -> 16 kHz mono -> log-mel features; write_wav for speech out
    processor.py  Processor: conversations -> the batch the Thinker takes (official keys and layout)

Nothing here depends on a release: what differs (defaults, token counts, interleaving) comes from the release's
record (omni.release).
"""
