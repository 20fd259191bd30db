"""A compact progress display for long HGQ runs: loss, accuracy, EBOPs and beta on one line.

Keras's own bar prints every metric with fixed precision and one block per epoch; over hundreds
of epochs with a beta sweep one wants a single line with the few numbers that matter. Use with
`model.fit(..., verbose=0)`. When the stream is not a terminal (log files, CI), bars would fill the
log with carriage returns, so it prints one plain line per epoch instead.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

import keras

from ._hooks import drop_batch_hook
from .ebops import total_ebops

MODES = ('epoch', 'overall')
DEFAULT_KEYS = ('loss', 'accuracy', 'ebops', 'beta')


def _is_tty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _format(value: Any) -> str:
    try:
        return f'{float(value):.4g}'
    except (TypeError, ValueError):
        return str(value)


class ProgressBar(keras.callbacks.Callback):
    """tqdm progress: one bar per epoch (`mode='epoch'`) or one bar over all epochs (`mode='overall'`).

    Args:
        keys: log keys to show, in order; their `val_` variants are shown at epoch end when present.
            'ebops' is computed from the model when no EBOPsLogger put it in the logs.
        file: the stream (default sys.stderr).
        bar: force the bar on (True) or off (False); None decides by whether `file` is a terminal.
    """

    def __init__(self, mode: str = 'epoch', keys: tuple[str, ...] = DEFAULT_KEYS, file: TextIO | None = None,
                 bar: bool | None = None) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f'ProgressBar: mode={mode!r} is not valid; use one of {MODES}')
        self.mode = mode
        self.keys = tuple(keys)
        self.file = file
        self.bar = bar
        self._tqdm: Any = None
        self._pbar: Any = None
        self._epochs = 0
        if mode != 'epoch':
            drop_batch_hook(self)  # the overall bar moves per epoch: no reason to slow every step

    @property
    def stream(self) -> TextIO:
        return sys.stderr if self.file is None else self.file

    def _use_bar(self) -> bool:
        if self._tqdm is None:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                self._tqdm = False
            else:
                self._tqdm = tqdm
        if self._tqdm is False:
            return False
        return _is_tty(self.stream) if self.bar is None else bool(self.bar)

    def _summary(self, logs: dict[str, Any] | None, epoch_end: bool) -> str:
        logs = dict(logs or {})
        if epoch_end and 'ebops' in self.keys and 'ebops' not in logs and self.model is not None:
            logs['ebops'] = total_ebops(self.model)
        names = [k for k in self.keys if k in logs]
        if epoch_end:
            names += [f'val_{k}' for k in self.keys if f'val_{k}' in logs]
        return ' '.join(f'{k}={_format(logs[k])}' for k in names)

    def _new_bar(self, total: int | None, desc: str, initial: int = 0) -> Any:
        return self._tqdm(total=total, initial=initial, desc=desc, file=self.stream, leave=True,
                          dynamic_ncols=True, unit='step' if self.mode == 'epoch' else 'epoch')

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._epochs = int((self.params or {}).get('epochs') or 0)
        self._pbar = None

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if not self._use_bar():
            return
        if self.mode == 'epoch':
            steps = (self.params or {}).get('steps')
            self._pbar = self._new_bar(steps, f'epoch {epoch + 1}/{self._epochs}')
        elif self._pbar is None:
            self._pbar = self._new_bar(self._epochs or None, 'training', initial=epoch)

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self.mode == 'epoch' and self._pbar is not None:
            self._pbar.set_postfix_str(self._summary(logs, epoch_end=False), refresh=False)
            self._pbar.update(1)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        summary = self._summary(logs, epoch_end=True)
        if self._pbar is None:
            print(f'epoch {epoch + 1}/{self._epochs} {summary}'.rstrip(), file=self.stream, flush=True)
            return
        self._pbar.set_postfix_str(summary, refresh=False)
        if self.mode == 'epoch':
            self._pbar.close()
            self._pbar = None
        else:
            self._pbar.update(1)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None
