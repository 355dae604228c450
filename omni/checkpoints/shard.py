"""One safetensors shard opened for loading: its tensors read into memory the process owns, not mapped.

safetensors' `get_tensor` returns a view of the whole file's memory map. Every page such a view touches counts in
the process's resident set until the file is closed, even after the tensor has been copied into the model (a
packed weight is converted into its kernel layout; a float one is cloned). Loading shard by shard, the last 2 GB
shard is then resident on top of a nearly complete model: measured on the 3-layer Qwen3-Omni int4 checkpoint,
1.9 GiB of file pages at the load's peak. Here each tensor is read (seek, readinto) straight into a tensor of its
own (the bytes pass through the page cache, which is not this process's memory), so nothing of the file stays
resident after its tensor is placed.

Loading's temporaries (these read buffers, the packed formats' conversions) are freed at once, but glibc keeps
freed chunks that sit between live tensors resident; the Shard hands them back to the OS (malloc_trim) every
TRIM_BYTES read and when it closes. Without that, 0.56 GiB stayed resident after loading the 3-layer Qwen3-Omni
int4 `--scope wide` checkpoint (benchmarks/full_size.py), and a 2 GB shard's worth of conversions grew the heap by
0.45 GiB before the shard ended.

safe_open still opens the file: it validates the header (offsets inside the file, no overlaps, known dtypes) and
answers keys(), get_slice() (shape and dtype without reading) and the dtypes this reader does not know, and
`get_mapped` gives its view of the file's mapping for the tensors meant to stay mapped (the loader's choice).
"""

from __future__ import annotations

import ctypes
import json
import struct
import sys

import torch
from safetensors import safe_open

_DTYPES = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32, "F64": torch.float64,
           "I8": torch.int8, "U8": torch.uint8, "I16": torch.int16, "I32": torch.int32, "I64": torch.int64,
           "BOOL": torch.bool, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2}
TRIM_BYTES = 256 * 10**6


def release_freed_heap() -> None:
    """Return the C heap's free pages to the OS (glibc's malloc_trim); nothing where the C library lacks it."""
    global _TRIM
    if _TRIM is None:
        try:
            _TRIM = ctypes.CDLL(None).malloc_trim if sys.platform.startswith("linux") else False
        except (OSError, AttributeError):
            _TRIM = False
    if _TRIM:
        _TRIM(0)


_TRIM = None


class Shard:
    """safe_open's interface (keys, get_slice, get_tensor, with-block) with get_tensor returning owned tensors."""

    def __init__(self, path: str):
        self._st = safe_open(path, framework="pt", device="cpu")  # validates the header; raises on a bad file
        self._file = open(path, "rb", buffering=0)
        try:
            (n,) = struct.unpack("<Q", self._file.read(8))
            self._entries = json.loads(self._file.read(n))
        except BaseException:
            self._file.close()
            raise
        self._data_start = 8 + n
        self._unreleased = 0  # bytes read since the freed heap was last handed back

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        self._file.close()
        self._st.__exit__(None, None, None)
        release_freed_heap()

    def keys(self):
        return self._st.keys()

    def get_slice(self, key: str):
        return self._st.get_slice(key)

    def get_mapped(self, key: str) -> torch.Tensor:
        """A copy-on-write view of the file's private mapping: only the pages read become resident; it keeps the
        mapping alive after close() (the file may be renamed or deleted, not truncated in place)."""
        return self._st.get_tensor(key)

    def get_tensor(self, key: str) -> torch.Tensor:
        entry = self._entries[key]
        dtype = _DTYPES.get(entry["dtype"])
        if dtype is None or sys.byteorder != "little":  # the file is little-endian; rare dtypes: safetensors reads
            return self._st.get_tensor(key).clone()
        begin, end = entry["data_offsets"]
        self._unreleased += end - begin
        if self._unreleased >= TRIM_BYTES:  # the earlier tensors' temporaries are gone by now
            self._unreleased = 0
            release_freed_heap()
        t = torch.empty(entry["shape"], dtype=dtype)
        buf = memoryview(t.reshape(-1).view(torch.uint8).numpy())
        if len(buf) != end - begin:
            raise ValueError(f"{key}: {end - begin} bytes stored for shape {entry['shape']} {entry['dtype']}")
        self._file.seek(self._data_start + begin)
        done = 0
        while done < len(buf):  # an unbuffered read may return less than asked (and at most ~2 GB at once)
            n = self._file.readinto(buf[done:])
            if not n:
                raise ValueError(f"{key}: the file ends inside the tensor")
            done += n
        return t
