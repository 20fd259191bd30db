"""Projects: a folder with `project.py` (data and model) and `config.yaml` (the training recipe).

`hgq train jets` finds `projects/jets/` in the working directory or in the hgq source tree; any
folder path works too, so a user's own project needs no registration. The module's contract::

    DATA = {...}    # keyword arguments of load_data and their defaults (the config's `data` keys)
    MODEL = {...}   # keyword arguments of build_model and their defaults (the config's `model` keys)
    def load_data(directory: Path, **data) -> hgq.workflow.Dataset
    def build_model(quantized: bool, **model) -> keras.Model   # quantized=False: the float twin
"""

from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from .config import ConfigError, read_yaml, resolve
from .dataset import Dataset

MODULE_FILE = 'project.py'
CONFIG_FILE = 'config.yaml'
REQUIRED = ('DATA', 'MODEL', 'load_data', 'build_model')


def search_roots() -> list[Path]:
    """Where project names are looked up: ./projects, then the projects/ beside the hgq package."""
    roots = [Path.cwd() / 'projects', Path(__file__).resolve().parents[2] / 'projects']
    return list(dict.fromkeys(r.resolve() for r in roots))


def available() -> list[str]:
    return sorted({p.parent.name for root in search_roots() if root.is_dir() for p in root.glob(f'*/{MODULE_FILE}')})


@dataclass
class Project:
    name: str
    directory: Path
    module: ModuleType

    def config(self, path: str | os.PathLike | None = None) -> dict[str, Any]:
        """The resolved config: `path`, or the project's own config.yaml (defaults where there is none)."""
        default = self.directory / CONFIG_FILE
        source = Path(path) if path is not None else default
        given = read_yaml(source) if (path is not None or default.is_file()) else {}
        return resolve(given, self.module.DATA, self.module.MODEL, where=str(source))

    def load_data(self, config: dict[str, Any]) -> Dataset:
        data = self.module.load_data(self.directory, **config['data'])
        if not isinstance(data, Dataset):
            raise TypeError(f'{self.directory / MODULE_FILE}: load_data must return hgq.workflow.Dataset, '
                            f'got {type(data).__name__}')
        data.source = data.source or f'project {self.name}'
        return data

    def build_model(self, config: dict[str, Any], quantized: bool = True) -> Any:
        return self.module.build_model(quantized, **config['model'])


def _import(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f'hgq_project_{name}', path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and pickling look modules up here
    spec.loader.exec_module(module)
    missing = [n for n in REQUIRED if not hasattr(module, n)]
    if missing:
        raise ConfigError(f'{path} does not define {", ".join(missing)} (a project module defines '
                          f'{", ".join(REQUIRED)}; see hgq/workflow/project.py)')
    return module


def find_project(name_or_path: str | os.PathLike) -> Project:
    """A project by folder path or by name (looked up in `search_roots()`)."""
    given = Path(name_or_path)
    candidates = [given] if (given.is_dir() or os.sep in str(name_or_path)) else []
    candidates += [root / str(name_or_path) for root in search_roots()]
    for directory in candidates:
        if (directory / MODULE_FILE).is_file():
            directory = directory.resolve()
            return Project(directory.name, directory, _import(directory / MODULE_FILE, directory.name))
    names = available()
    raise ConfigError(f'no project {str(name_or_path)!r}: no {MODULE_FILE} in '
                      f'{", ".join(str(c) for c in candidates)}; available projects: '
                      f'{", ".join(names) if names else "none"} (or give a folder with {MODULE_FILE})')
