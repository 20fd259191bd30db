"""Read a QKeras model file without QKeras, TensorFlow or Keras 2: the model config and named weights.

Two layouts (both read with h5py/zipfile only):
- legacy Keras 2 `.h5` (`model.save('m.h5')`, qkeras 0.9): attribute `model_config` (JSON) and group
  `model_weights/<layer>/` whose `weight_names` attribute lists datasets such as `cbn/kernel:0`,
  `cbn/batch_normalization/gamma:0`; a weight's role is the last path component without `:0`.
- Keras 3 `.keras` zip (qkeras-v3): `config.json` and `model.weights.h5`, whose groups are NOT named
  after the layers but after the class (`layers/q_dense_1/vars/0`): Keras numbers the snake-cased
  class names in the order of the model's layer list (keras saving_lib `_save_container_state`), and
  `vars/<n>` are in creation order. Sub-layers (the batch norm inside QDenseBatchnorm) are groups below.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

#: layer weights by role, e.g. {'kernel': ..., 'bias': ..., 'gamma': ...}
Weights = dict[str, np.ndarray]


class QKerasImportError(ValueError):
    """A QKeras file or feature this importer cannot reproduce exactly."""


def read_qkeras_file(path: str | Path) -> tuple[dict[str, Any], dict[str, Weights], str]:
    """(model config, {layer name: weights by role}, kind 'h5' or 'keras') of a QKeras model file."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise QKerasImportError(f'{path}: no such file')
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            if 'config.json' not in names or 'model.weights.h5' not in names:
                raise QKerasImportError(f'{path}: a .keras zip needs config.json and model.weights.h5')
            config = json.loads(z.read('config.json'))
            blob = io.BytesIO(z.read('model.weights.h5'))
        with h5py.File(blob, 'r') as h:
            weights = _keras3_weights(h, config)
        return config, weights, 'keras'
    try:
        h = h5py.File(path, 'r')
    except OSError as err:
        raise QKerasImportError(f'{path}: neither a .keras zip nor an HDF5 file ({err})') from err
    with h:
        if 'model_config' not in h.attrs or 'model_weights' not in h:
            raise QKerasImportError(f'{path}: a legacy .h5 model needs the model_config attribute and '
                                    'model_weights group (saved with model.save, not save_weights)')
        raw = h.attrs['model_config']
        config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
        weights = _legacy_weights(h['model_weights'])
    return config, weights, 'h5'


def _legacy_weights(group: Any) -> dict[str, Weights]:
    out: dict[str, Weights] = {}
    for layer in group:
        names = [n.decode() if isinstance(n, bytes) else n for n in group[layer].attrs.get('weight_names', [])]
        out[layer] = {n.split('/')[-1].split(':')[0]: np.asarray(group[layer][n]) for n in names}
    return out


def snake_case(name: str) -> str:
    """Keras' `naming.to_snake_case` (the group names of a .keras weights file)."""
    name = re.sub(r'\W+', '', name)
    name = re.sub('(.)([A-Z][a-z]+)', r'\1_\2', name)
    return re.sub('([a-z])([A-Z])', r'\1_\2', name).lower()


#: roles of `vars/<n>` in creation order, per class (Keras BatchNormalization: gamma, beta, mean, variance)
_BN_ROLES = ('gamma', 'beta', 'moving_mean', 'moving_variance')


def _keras3_weights(h: Any, config: dict[str, Any]) -> dict[str, Weights]:
    layers = layer_list(config)
    used: dict[str, int] = {}
    out: dict[str, Weights] = {}
    root = h['layers'] if 'layers' in h else None
    for spec in layers:
        group = snake_case(spec.get('class_name', ''))
        if group in used:
            used[group] += 1
            group = f'{group}_{used[group]}'
        else:
            used[group] = 0
        name = spec.get('config', {}).get('name', '?')
        if root is None or group not in root:
            out[name] = {}
            continue
        out[name] = _layer_vars(name, root[group], spec)
    return out


def _layer_vars(name: str, g: Any, spec: dict[str, Any]) -> Weights:
    """Weights by role of one layer group (`vars/0, vars/1, ...`, sub-layer `batchnorm/vars/...`)."""
    cfg = spec.get('config', {})
    own = [np.asarray(g['vars'][k]) for k in sorted((k for k in g['vars'] if k.isdigit()), key=int)] \
        if 'vars' in g else []
    roles = ['kernel'] + (['bias'] if cfg.get('use_bias', True) else [])
    if spec.get('class_name') in ('QBatchNormalization', 'BatchNormalization'):
        roles = _bn_roles(cfg)
    if own and len(own) != len(roles):
        raise QKerasImportError(f'{name}: {len(own)} weight arrays in the .keras file, expected {len(roles)} '
                                f'({", ".join(roles)})')
    out = dict(zip(roles, own))
    if 'batchnorm' in g:
        bn = g['batchnorm']['vars']
        bn_roles = _bn_roles(cfg)
        arrays = [np.asarray(bn[k]) for k in sorted((k for k in bn if k.isdigit()), key=int)]
        if len(arrays) != len(bn_roles):
            raise QKerasImportError(f'{name}: {len(arrays)} batch-norm arrays in the .keras file, expected '
                                    f'{", ".join(bn_roles)}')
        out.update(zip(bn_roles, arrays))
    return out


def _bn_roles(cfg: dict[str, Any]) -> list[str]:
    drop = {'gamma'} if not cfg.get('scale', True) else set()
    drop |= {'beta'} if not cfg.get('center', True) else set()
    return [r for r in _BN_ROLES if r not in drop]


def layer_list(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The model config's list of layer specs (Sequential or Functional, Keras 2 or 3)."""
    inner = config.get('config', config)
    layers = inner.get('layers') if isinstance(inner, dict) else None
    if not isinstance(layers, list):
        raise QKerasImportError('model config has no layer list')
    return layers
