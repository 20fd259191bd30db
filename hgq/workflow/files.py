"""Reading the files a user hands us (checkpoints, calibration arrays, configs) with one clear error each.

Keras, NumPy and PyYAML report a bad file in their own words (Keras says "File not found" for a file that
exists but is not a zip); every command loads through these functions instead, so a bad file is one
`BadFileError` line that names the file, what is wrong with it and what would be valid.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np


class BadFileError(ValueError):
    """A file that cannot be used; the message names the file, what is wrong and what is valid."""


def _first_line(e: BaseException, limit: int = 200) -> str:
    text = str(e).strip().splitlines()
    line = text[0] if text else ''
    line = line if len(line) <= limit else line[:limit] + '...'
    return f'{type(e).__name__}: {line}' if line else type(e).__name__


def _existing_file(path: str | os.PathLike, what: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise BadFileError(f'{what} file {str(p)!r} does not exist')
    if not p.is_file():
        raise BadFileError(f'{what} file {str(p)!r} is a folder, not a file')
    return p


def check_checkpoint(path: str | os.PathLike) -> Path:
    """The checkpoint's path, after the checks that need no Keras: exists, `.keras`, a zip with config.json."""
    p = _existing_file(path, 'checkpoint')
    valid = "expected a .keras checkpoint written by model.save('name.keras')"
    if p.suffix != '.keras':
        raise BadFileError(f'checkpoint file {str(p)!r} has the suffix {p.suffix or "(none)"!r}; {valid}')
    try:
        with zipfile.ZipFile(p) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise BadFileError(f'checkpoint file {str(p)!r} is not a zip archive (truncated, or another kind of '
                           f'file: {_first_line(e)}); {valid}') from None
    if 'config.json' not in names:
        raise BadFileError(f'checkpoint file {str(p)!r} is a zip archive without config.json, so not a Keras '
                           f'checkpoint; {valid}')
    return p


def load_checkpoint(path: str | os.PathLike, compile: bool = True) -> Any:
    """A Keras model of hgq layers from a .keras file; any failure is a BadFileError naming the file."""
    p = check_checkpoint(path)
    import keras

    import hgq.layers  # noqa: F401 - registers the layers for loading

    try:
        return keras.models.load_model(p, compile=compile)
    except Exception as e:  # Keras raises many kinds (ValueError, TypeError, KeyError, OSError) for bad files
        raise BadFileError(f'checkpoint file {str(p)!r} could not be loaded by Keras ({_first_line(e)}); '
                           'expected a complete .keras checkpoint of hgq layers') from e


def load_array(path: str | os.PathLike, what: str = 'calibration', finite: bool = True) -> np.ndarray:
    """A float32 array from a .npy, or the first array of an .npz; checked non-empty and (if `finite`) finite."""
    p = _existing_file(path, what)
    valid = 'expected a .npy file (np.save) or an .npz file (np.savez) of numbers'
    if p.suffix not in ('.npy', '.npz'):
        raise BadFileError(f'{what} file {str(p)!r} has the suffix {p.suffix or "(none)"!r}; {valid}')
    try:
        data = np.load(p, allow_pickle=False)
        if isinstance(data, np.lib.npyio.NpzFile):
            with data:
                if not data.files:
                    raise BadFileError(f'{what} file {str(p)!r} holds no arrays; {valid}')
                raw = data[data.files[0]]
        else:
            raw = data
    except BadFileError:
        raise
    except Exception as e:  # truncated zips and arrays, pickles, text: zipfile, ValueError, EOFError, OSError
        raise BadFileError(f'{what} file {str(p)!r} is not a readable array file ({_first_line(e)}); '
                           f'{valid}') from None
    try:
        array = np.asarray(raw, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise BadFileError(f'{what} file {str(p)!r} holds {raw.dtype} values, not numbers ({_first_line(e)}); '
                           f'{valid}') from None
    if array.ndim == 0 or array.size == 0:
        raise BadFileError(f'{what} file {str(p)!r} holds an array of shape {array.shape}; expected one sample '
                           'per row (shape (n, ...) with n >= 1)')
    if finite:
        bad = int((~np.isfinite(array)).sum())
        if bad:
            raise BadFileError(f'{what} file {str(p)!r} has {bad} NaN/Inf values; fixed-point inputs must be '
                               'finite')
    return array


def load_config(path: str | os.PathLike, what: str = 'config') -> dict[str, Any]:
    """A YAML mapping from a file (empty file: {}); bad YAML is a BadFileError with the line and column."""
    import yaml

    p = _existing_file(path, what)
    try:
        text = p.read_text(encoding='utf-8')
    except UnicodeDecodeError as e:
        raise BadFileError(f'{what} file {str(p)!r} is not UTF-8 text (byte {e.start}); expected a YAML '
                           'text file') from None
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f'line {mark.line + 1}, column {mark.column + 1}: ' if mark is not None else ''
        problem = ' '.join(str(x) for x in (e.context, e.problem) if x)
        raise BadFileError(f'{what} file {str(p)!r} is not valid YAML: {where}{problem}') from None
    except yaml.YAMLError as e:
        raise BadFileError(f'{what} file {str(p)!r} is not valid YAML: {_first_line(e)}') from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise BadFileError(f'{what} file {str(p)!r} must hold a mapping of keys to values (key: value lines), '
                           f'got a {type(data).__name__}')
    return data
