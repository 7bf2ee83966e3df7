"""Files a kill never leaves half-written: write beside the target, fsync, rename.

Every file of the trainer that a later command reads — checkpoints and
metrics, latency tables, the ONNX model, the layout and image caches — is
written through `write_atomic`, so a reader or a crash sees the old file or
the whole new one, never a torn one.  (The device script `time_blocks.py`
keeps its own copy: it runs where only onnxruntime and numpy are installed.)
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO, Callable

Content = bytes | str | Callable[[BinaryIO], object]


def temp_path(path: Path) -> Path:
    """Where `write_atomic` writes before its rename: beside `path` (same filesystem, so the rename is
    atomic), hidden, and per process (two commands saving the same file never share a temporary)."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def write_atomic(path: str | Path, content: Content) -> None:
    """Write `content` (bytes, text as UTF-8, or a function that writes to a binary file) to `path` atomically.

    Raises OSError as `open` would; the temporary file is removed on any failure.
    """
    path = Path(path)
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as f:
            if callable(content):
                content(f)
            else:
                f.write(content.encode("utf-8") if isinstance(content, str) else content)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
