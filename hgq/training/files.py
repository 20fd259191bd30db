"""Crash-safe files: write to a temporary name in the target folder, fsync, rename into place.

`os.replace` is atomic on one file system, so a reader (or the next run after a crash) sees either the
old file or the new one, never half of one. Temporary names start with TEMP_PREFIX so that leftovers of
a crash can be recognised and removed (ParetoCheckpoint does).
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Callable
from typing import Any

TEMP_PREFIX = '.tmp-'


def _fsync_directory(directory: str) -> None:
    """Make a rename durable; not every platform can open a directory, which is harmless."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_atomic(path: str | os.PathLike, suffix: str, write: Callable[[str], None]) -> None:
    """`write(temp)` fills a temporary file beside `path`, which then replaces `path`."""
    path = os.fspath(path)
    directory = os.path.dirname(path) or '.'
    temp = os.path.join(directory, f'{TEMP_PREFIX}{uuid.uuid4().hex}{suffix}')
    try:
        write(temp)
        with open(temp, 'rb') as f:
            os.fsync(f.fileno())
        os.replace(temp, path)
        _fsync_directory(directory)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temp)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    def write(temp: str) -> None:
        with open(temp, 'w', encoding='utf-8') as f:
            f.write(text)

    _write_atomic(path, '.txt', write)


def write_json_atomic(path: str | os.PathLike, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=1, allow_nan=False))


def save_model_atomic(model: Any, path: str | os.PathLike) -> None:
    """A Keras model (with its optimizer state) saved to `path`; Keras insists on the .keras suffix."""
    _write_atomic(path, '.keras', model.save)
