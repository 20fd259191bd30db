"""The live display of a sweep: one line per trial (epoch, val accuracy, EBOPs) and an overall bar.

The driver reads each running trial's history.csv (the run folder is the truth, and reading it needs no
channel from the Ray workers). On a terminal the block of lines is redrawn in place; in a log (CI, a
file) a trial's line is printed only when it changes, so the log reads as a plain history.
"""

from __future__ import annotations

import csv
import io
import shutil
import time
from pathlib import Path
from typing import Any, TextIO

from .sweep import Trial, is_done

BAR_WIDTH = 24


def _is_tty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def last_row(path: Path) -> tuple[int, dict[str, str]]:
    """(number of epoch rows, the last row) of a history.csv; (0, {}) when there is none yet."""
    try:
        text = path.read_text(encoding='utf-8')
    except FileNotFoundError:
        return 0, {}
    rows = list(csv.DictReader(io.StringIO(text)))
    return len(rows), (rows[-1] if rows else {})


class Progress:
    """Trial states ('queued', 'running', 'done', 'failed', 'skipped') and their rendering to `stream`."""

    def __init__(self, trials: list[Trial], stream: TextIO, tty: bool | None = None) -> None:
        self.trials = trials
        self.stream = stream
        self.tty = _is_tty(stream) if tty is None else tty
        self.start = time.time()
        self.state: dict[str, dict[str, Any]] = {}
        self._printed: dict[str, str] = {}
        self._drawn = 0
        self._closed = False
        self._last_overall = ''
        for t in trials:
            status = 'skipped' if is_done(t.run_dir) else 'queued'
            self.state[t.name] = {'status': status, 'epochs': t.config['training']['epochs'], 'epoch': 0,
                                  'note': 'done before this run' if status == 'skipped' else ''}
        self.refresh()

    def launched(self, trials: list[Trial]) -> None:
        self.start = time.time()
        for t in trials:
            self.state[t.name]['status'] = 'launched'
        self.refresh()

    def finished(self, trial: Trial) -> None:
        self._read(trial)
        self.state[trial.name]['status'] = 'done'

    def failed(self, trial: Trial, why: str) -> None:
        self._read(trial)
        self.state[trial.name].update(status='failed', note=why[:100])

    def _read(self, trial: Trial) -> None:
        s = self.state[trial.name]
        n, row = last_row(trial.run_dir / 'history.csv')
        s['epoch'] = n
        for key in ('val_accuracy', 'ebops'):
            if row.get(key) not in (None, ''):
                s[key] = float(row[key])
        log = trial.run_dir / 'train.log'
        if s['status'] == 'launched' and log.is_file() and log.stat().st_mtime >= self.start - 1:
            s['status'] = 'running'
        if s['status'] == 'running' and n == 0:
            floats = trial.config['training']['float_epochs'] and not (trial.run_dir / 'float.json').is_file()
            s['note'] = 'float baseline' if floats else 'starting'
        elif s['status'] == 'running':
            s['note'] = ''

    def line(self, trial: Trial) -> str:
        s = self.state[trial.name]
        acc = f'{s["val_accuracy"]:.4f}' if 'val_accuracy' in s else '-'
        ebops = f'{s["ebops"]:,.0f}' if 'ebops' in s else '-'
        status = {'launched': 'waiting for a worker'}.get(s['status'], s['status'])
        note = f' ({s["note"]})' if s['note'] else ''
        return (f'{trial.name[:44]:<44} epoch {s["epoch"]:>4}/{s["epochs"]:<4} val acc {acc:>6}  '
                f'EBOPs {ebops:>11}  {status}{note}')

    def overall(self) -> str:
        total = len(self.trials)
        counts = {k: sum(s['status'] == k for s in self.state.values())
                  for k in ('done', 'skipped', 'failed', 'running', 'launched')}
        done = counts['done'] + counts['skipped']
        filled = round(BAR_WIDTH * done / max(total, 1))
        elapsed = time.time() - self.start
        return (f'[{"#" * filled}{"." * (BAR_WIDTH - filled)}] {done}/{total} trials done, {counts["running"]} '
                f'running, {counts["launched"]} waiting, {counts["failed"]} failed, {elapsed:.0f} s')

    def refresh(self) -> None:
        if self._closed:
            return
        for t in self.trials:
            if self.state[t.name]['status'] in ('launched', 'running'):
                self._read(t)
        lines = {t.name: self.line(t) for t in self.trials if self.state[t.name]['status'] != 'queued'}
        overall = self.overall()
        if self.tty:
            self._draw([(self.state[name]['status'], text) for name, text in lines.items()], overall)
            return
        for name, text in lines.items():
            if self._printed.get(name) != text and self.state[name]['status'] != 'launched':
                self._printed[name] = text
                print(text, file=self.stream, flush=True)
        done_part = overall.split(' trials done')[0]
        if done_part != self._last_overall:
            self._last_overall = done_part
            print(overall, file=self.stream, flush=True)

    def _draw(self, rows: list[tuple[str, str]], overall: str) -> None:
        room = max(shutil.get_terminal_size((120, 40)).lines - 3, 3)
        lines = [text for _, text in rows]
        if len(rows) > room:  # the running and failed first, then the others
            order = {'running': 0, 'failed': 1, 'launched': 2, 'done': 3, 'skipped': 4}
            keyed = sorted(rows, key=lambda r: order.get(r[0], 5))
            lines = [text for _, text in keyed[:room - 1]] + [f'... and {len(rows) - room + 1} more trials']
        width = shutil.get_terminal_size((120, 40)).columns
        out = [f'\x1b[{self._drawn}F' if self._drawn else '']
        out += [f'\x1b[2K{text[:width - 1]}\n' for text in [*lines, overall]]
        out.append('\x1b[J')
        self.stream.write(''.join(out))
        self.stream.flush()
        self._drawn = len(lines) + 1

    def close(self) -> None:
        if not self._closed:
            self.refresh()
            self._closed = True
