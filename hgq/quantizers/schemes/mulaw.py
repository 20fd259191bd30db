"""μ-law companding (Osama, Madian, Fouda 2025, Applied Soft Computing 185:113979), exportable exactly.

    x̂ = α · F⁻¹(Q_b(F(clip(x/α, −1, 1)))),   F(u) = sign(u)·ln(1 + μ|u|)/ln(1 + μ)

Q_b rounds uniformly in the companded domain (L = 2^(b−1) − 1 steps per side signed, 2^b − 1
unsigned), so the decision thresholds are expansions of companded midpoints, not midpoints of levels.
Why tables in variables: the levels and thresholds come from transcendental functions of α and μ,
which float32 Keras and float64 numpy (and eager vs compiled code) may evaluate one grid step apart
after snapping. So every training step computes the snapped tables once, uses them in its forward
pass and stores them (non-trainable variables); inference and `describe()` read the stored tables,
and `after_calibration()` recomputes them from the current α, μ. Keras inference therefore equals
the emulator bit for bit by construction, and training sees the levels the hardware stores.
Gradients come from an LSQ-like surrogate (docs/quantizers.md "## μ-law"). μ sharing between
quantizers (one per model / per kind / per layer and kind) is kept by the `TieMu` callback.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
from keras import ops

from ..base import Quantizer
from ..fixed_point import FixedFormat, ceil_log2_np, ceil_log2_ops, round_to_step
from ..indexed import IndexedFormat, indexed_format, indexed_quantize_with
from ..registry import register_scheme

MAX_BITS = 8  # 2^8 comparisons per element in the Keras forward pass; beyond that a table is cheaper
MAX_LEVEL_FRAC_BITS = 20
MAX_LEVEL_CODE_BITS = 24  # float32 significand: a level code beyond it is not exact in Keras
SHARE_MODES = ('tensor', 'layer', 'kind', 'model')


def _grad_scale(x: Any, g: float) -> Any:
    """Value x, gradient g·dL/dx (LSQ's step-size gradient scale)."""
    return ops.stop_gradient(x - x * g) + x * g


@keras.saving.register_keras_serializable(package='hgq')
class MuLawQuantizer(Quantizer):
    """b-bit μ-law companding with range α (per tensor, or per output channel for weights) and μ > 0.

    Args:
        bits: index width b; signed levels 0, ±α·F⁻¹(j/L) (2^b − 1 of them, b >= 2), unsigned 0..α
            (2^b levels, b >= 1). At most 8.
        mu: initial μ > 0 (255, the telephony μ-law, by default).
        learnable_mu: train log μ (μ = exp(θ) stays positive); False keeps μ fixed.
        signed: True (default) for [−α, α]; False for activations after a ReLU ([0, α]).
        share: which quantizers share one μ, tied by the `TieMu` callback: 'layer' (default: a
            layer's weights share one μ, its activations another), 'kind' (one for all weights, one
            for all activations), 'model' (one for everything), 'tensor' (no sharing).
        level_frac_bits: F; every level and α are snapped to the grid 2^−F (what the hardware stores).
        per_channel: weights only: one α per output channel (last axis); activations are per tensor.
        percentile: weights' initial α is this percentile of |w| (100: max |w|).
        learnable_alpha: train α after its initialization (True) or keep it.
    """

    def __init__(self, role: str = 'activation', bits: int = 4, mu: float = 255.0, learnable_mu: bool = True,
                 signed: bool | None = None, share: str = 'layer', level_frac_bits: int = 8,
                 per_channel: bool = True, percentile: float = 100.0, learnable_alpha: bool = True,
                 **kwargs: Any) -> None:
        super().__init__(role=role, **kwargs)
        owner = self.name
        self.signed = True if signed is None else bool(signed)
        low = 2 if self.signed else 1
        if isinstance(bits, bool) or int(bits) != bits or not low <= int(bits) <= MAX_BITS:
            raise ValueError(f'{owner}: bits={bits!r} must be an integer in [{low}, {MAX_BITS}] for '
                             f'signed={self.signed} (signed levels need a sign and at least one magnitude)')
        if isinstance(mu, bool) or not (math.isfinite(float(mu)) and float(mu) > 0):
            raise ValueError(f'{owner}: mu={mu!r} must be a positive finite number (μ-law needs μ > 0)')
        if share not in SHARE_MODES:
            raise ValueError(f'{owner}: share={share!r} is not valid; use one of {SHARE_MODES}')
        if isinstance(level_frac_bits, bool) or int(level_frac_bits) != level_frac_bits \
                or not 0 <= int(level_frac_bits) <= MAX_LEVEL_FRAC_BITS:
            raise ValueError(f'{owner}: level_frac_bits={level_frac_bits!r} must be an integer in '
                             f'[0, {MAX_LEVEL_FRAC_BITS}]')
        if not 0 < float(percentile) <= 100:
            raise ValueError(f'{owner}: percentile={percentile!r} must be in (0, 100]')
        self.n_bits, self.mu_init, self.learnable_mu = int(bits), float(mu), bool(learnable_mu)
        self.share, self.level_frac_bits = share, int(level_frac_bits)
        self.per_channel, self.percentile = bool(per_channel), float(percentile)
        self.learnable_alpha = bool(learnable_alpha)
        self._ready = False  # Python-side: tables known to be set (skips the first-call where() afterwards)

    # ---- the level set ----------------------------------------------------------------------------
    @property
    def steps(self) -> int:
        """L: companded-domain steps on each side (signed) or in total (unsigned)."""
        return 2 ** (self.n_bits - 1) - 1 if self.signed else 2 ** self.n_bits - 1

    @property
    def input_frac_bits(self) -> int:
        """Fractional bits of the input cast the encode compares on (one finer than the levels)."""
        return self.level_frac_bits + 1

    def _codes(self) -> tuple[np.ndarray, np.ndarray]:
        """Level indices j and threshold midpoints j − ½ of the companded domain, ascending."""
        lo = -self.steps if self.signed else 0
        j = np.arange(lo, self.steps + 1, dtype=np.float64)
        return j, j[1:] - 0.5

    def _param_shape(self, input_shape: tuple) -> tuple[int, ...]:
        if self.role == 'weight' and self.per_channel and len(input_shape):
            return (int(input_shape[-1]),)
        return ()

    def build(self, input_shape: tuple) -> None:
        shape = tuple(input_shape)[1:] if self.role == 'activation' else tuple(input_shape)
        if any(d is None for d in shape):
            raise ValueError(f'{self.name}: every axis but the batch must have a known size, got {input_shape}')
        self._shape = shape
        self._n = float(max(int(np.prod(shape)), 1))
        p = self._pshape = self._param_shape(shape)
        n = len(self._codes()[0])
        # α = alpha_base · alpha_scale: the data-derived base is non-trainable because a trainer keeps only
        # non-trainable state assigned inside a step (JAX drops assignments to trainable variables there)
        self.alpha_base = self.add_weight(name='alpha_base', shape=p, initializer='ones', trainable=False)
        self.alpha_scale = self.add_weight(name='alpha_scale', shape=p, initializer='ones',
                                           trainable=self.learnable_alpha)
        self.log_mu = self.add_weight(name='log_mu', shape=(), trainable=self.learnable_mu,
                                      initializer=keras.initializers.Constant(math.log(self.mu_init)))
        # 1 once α holds a derived value and the tables below match it
        self.initialized = self.add_weight(name='initialized', shape=(), trainable=False, initializer='zeros')
        self.levels = self.add_weight(name='levels', shape=(*p, n), trainable=False, initializer='zeros')
        self.thresholds = self.add_weight(name='thresholds', shape=(*p, n - 1), trainable=False,
                                          initializer='zeros')
        if self.role == 'activation':
            self.abs_max = self.add_weight(name='abs_max', shape=(), trainable=False, initializer='zeros')
        super().build(input_shape)

    def alpha(self) -> np.ndarray:
        """The range α the tables use now (numpy): |alpha_base · alpha_scale| floored at 2^-F."""
        return np.asarray(ops.convert_to_numpy(self._alpha_now()), dtype=np.float64)

    def _alpha_now(self) -> Any:
        return self._alpha_floor(ops.convert_to_tensor(self.alpha_base) * ops.convert_to_tensor(self.alpha_scale))

    @property
    def mu(self) -> float:
        return float(math.exp(float(ops.convert_to_numpy(self.log_mu))))

    def _alpha_floor(self, alpha: Any) -> Any:
        """|α| floored at one level step, so the set never collapses to 0 and x/α stays finite."""
        return ops.maximum(ops.abs(alpha), 2.0 ** -self.level_frac_bits)

    def _tables(self, alpha: Any, log_mu: Any) -> tuple[Any, Any]:
        """Snapped (levels, thresholds) in keras.ops, float32: the one implementation of the tables."""
        j, m = self._codes()
        L = float(self.steps)
        mu = ops.exp(log_mu)
        span = ops.log1p(mu)

        def expand(c: np.ndarray) -> Any:  # F⁻¹(c/L), exactly ±1 at c = ±L (the top level is α itself)
            a = ops.convert_to_tensor(np.abs(c / L).astype(np.float32))
            e = ops.expm1(a * span) / mu
            e = ops.where(a == 1.0, 1.0, e)
            return ops.convert_to_tensor(np.sign(c).astype(np.float32)) * e

        a = ops.expand_dims(alpha, -1)
        f, fi = float(self.level_frac_bits), float(self.input_frac_bits)
        levels = ops.round(a * expand(j) * 2.0 ** f) * 2.0 ** -f
        thresholds = ops.ceil(a * expand(m) * 2.0 ** fi) * 2.0 ** -fi
        return levels, thresholds

    def _init_alpha(self, x: Any) -> Any:
        """Initial α from data: weights the `percentile` of |w| (per channel), activations max |x| of the batch."""
        w = ops.abs(ops.convert_to_tensor(x, dtype='float32'))
        if self._pshape:
            w = ops.reshape(w, (-1, w.shape[-1]))
            a0 = ops.max(w, axis=0) if self.percentile == 100 else ops.quantile(w, self.percentile / 100.0, axis=0)
        else:
            w = ops.reshape(w, (-1,))
            a0 = ops.max(w) if self.percentile == 100 or self.role == 'activation' else \
                ops.quantile(w, self.percentile / 100.0)
        return ops.maximum(ops.reshape(a0, self._pshape), 2.0 ** -self.level_frac_bits)

    # ---- forward ------------------------------------------------------------------------------------
    def call(self, x: Any, training: bool | None = None) -> Any:
        xc = ops.stop_gradient(x)
        calibrating = self.role == 'activation' and self.calibrating
        if calibrating:
            self.abs_max.assign(ops.maximum(ops.convert_to_tensor(self.abs_max), ops.max(ops.abs(xc))))
        init = ops.convert_to_tensor(self.initialized) > 0
        base = ops.convert_to_tensor(self.alpha_base)
        if self.role == 'weight' or training:
            if not self._ready:  # first data seen derives α (inside a traced step too, through where())
                base = ops.where(init, base, self._init_alpha(xc))
                self.alpha_base.assign(base)
        alpha = self._alpha_floor(ops.stop_gradient(base) * ops.convert_to_tensor(self.alpha_scale))
        log_mu = ops.convert_to_tensor(self.log_mu)
        if training or calibrating or not self._ready:
            levels, thresholds = (ops.stop_gradient(t) for t in self._tables(alpha, log_mu))
            if not training and not calibrating:  # a first inference call keeps tables already stored
                levels = ops.where(init, ops.convert_to_tensor(self.levels), levels)
                thresholds = ops.where(init, ops.convert_to_tensor(self.thresholds), thresholds)
            if self.role == 'weight' or training:
                self.levels.assign(levels)
                self.thresholds.assign(thresholds)
                self.initialized.assign(ops.ones((), dtype='float32'))
                self._mark_ready()
        else:
            levels, thresholds = ops.convert_to_tensor(self.levels), ops.convert_to_tensor(self.thresholds)
        levels, thresholds = ops.cast(levels, x.dtype), ops.cast(thresholds, x.dtype)
        q = round_to_step(ops, xc, float(self.input_frac_bits), 'RND')
        y = indexed_quantize_with(ops, q, thresholds, levels)
        if calibrating:  # an unset α would distort what the layers after it observe: pass x through
            y = ops.where(init, y, xc)
        return ops.stop_gradient(y) + self._surrogate_grad(x, alpha, log_mu)

    def _surrogate_grad(self, x: Any, alpha: Any, log_mu: Any) -> Any:
        """Zero-valued term carrying the gradients: 1 to x inside [lo·α, α]; LSQ-like to α and log μ.

        The α/μ part is the companding formula with the companded rounding straight through, evaluated
        at the rounded point, scaled by LSQ's 1/√(N·L) (N elements per sample or per weight tensor).
        """
        lo = -1.0 if self.signed else 0.0
        xc = ops.stop_gradient(x)
        g = 1.0 / math.sqrt(self._n * self.steps)
        a = _grad_scale(alpha, g)
        if self._pshape:  # per channel: α along the last axis
            a = ops.reshape(a, (1,) * (len(x.shape) - 1) + self._pshape)
        mu = ops.exp(_grad_scale(log_mu, g))
        span = ops.log1p(mu)
        v = ops.clip(xc / a, lo, 1.0)
        r = ops.sign(v) * ops.log1p(mu * ops.abs(v)) / span * self.steps
        r = r + ops.stop_gradient(ops.round(r) - r)
        u = r / self.steps
        surrogate = a * ops.sign(u) * ops.expm1(ops.abs(u) * span) / mu
        inside = ops.logical_and(xc >= lo * ops.stop_gradient(a), xc <= ops.stop_gradient(a))
        straight = ops.where(inside, x - xc, 0.0)
        return (surrogate - ops.stop_gradient(surrogate)) + straight

    def _mark_ready(self) -> None:
        try:
            self._ready = bool(float(ops.convert_to_numpy(self.initialized)) > 0)
        except Exception:  # traced: the graph keeps the where() guard
            pass

    def refresh(self) -> None:
        """Recompute the stored tables from the current α and μ (eager), e.g. after training's last step."""
        if not self.built or float(ops.convert_to_numpy(self.initialized)) == 0:
            return
        levels, thresholds = self._tables(self._alpha_now(), ops.convert_to_tensor(self.log_mu))
        self.levels.assign(levels)
        self.thresholds.assign(thresholds)
        self._ready = True

    # ---- protocol -----------------------------------------------------------------------------------
    def bits(self, x: Any = None) -> Any:
        """Width of the stored level, from the largest level code round(α·2^F) (the top level is α).

        Signed: 1 + ceil(log2(code + 1)); unsigned: ceil(log2(code + 1)). No gradient (not trained).
        """
        code = ops.round(ops.stop_gradient(self._alpha_now()) * 2.0 ** self.level_frac_bits)
        w = ceil_log2_ops(ops, code + 1.0) + (1.0 if self.signed else 0.0)
        if x is not None and self.role == 'weight':
            return ops.broadcast_to(w, tuple(x.shape))
        return ops.broadcast_to(w, self._shape) if not self._pshape else w

    def describe(self, values: np.ndarray | None = None) -> IndexedFormat:
        if values is not None and not self.built:
            self.build(tuple(np.shape(values)))
        if not self.built:
            raise ValueError(f'{self.name}: not built; call the model once before export')
        if values is not None and float(ops.convert_to_numpy(self.initialized)) == 0:
            self(ops.convert_to_tensor(values, dtype='float32'))  # weights: α and tables from the values
        if float(ops.convert_to_numpy(self.initialized)) == 0:
            raise ValueError(f'{self.name}: its range α was never set (no training step and no calibration); '
                             'run hgq.training.calibrate(model, x) before export')
        levels = np.asarray(ops.convert_to_numpy(self.levels), dtype=np.float64)
        thresholds = np.asarray(ops.convert_to_numpy(self.thresholds), dtype=np.float64)
        code_bits = ceil_log2_np(np.max(np.abs(levels)) * 2.0 ** self.level_frac_bits + 1)
        if code_bits > MAX_LEVEL_CODE_BITS - 1:
            raise ValueError(f'{self.name}: the level set (α up to {np.max(np.abs(levels)):g}, level_frac_bits='
                             f'{self.level_frac_bits}) needs {int(code_bits) + 1}-bit level codes; at most '
                             f'{MAX_LEVEL_CODE_BITS} fit exactly; lower level_frac_bits')
        fi = self.input_frac_bits
        step = 2.0 ** -fi
        t_lo, t_hi = thresholds.min(axis=-1), thresholds.max(axis=-1)
        # the narrowest saturating cast that keeps every comparison: 2^i − step >= t_hi and −2^i < t_lo
        k = (t_lo <= 0).astype(np.int64)
        i = ceil_log2_np(np.maximum(t_hi + step, np.where(k > 0, -t_lo + step, step)))
        one = np.ones(np.shape(levels)[:-1], dtype=np.int64)
        fmt = FixedFormat(one * k, one * i, one * fi, 'RND', 'SAT')
        return indexed_format(fmt, thresholds, levels, self.n_bits, owner=self.name)

    def calibration_variables(self) -> list[keras.Variable]:
        return [self.abs_max] if self.role == 'activation' and self.built else []

    def after_calibration(self) -> None:
        """PTQ: an activation α never set comes from the calibration max |x|; then every table is refreshed."""
        if not self.built:
            return
        if self.role == 'activation' and float(ops.convert_to_numpy(self.initialized)) == 0:
            m = float(ops.convert_to_numpy(self.abs_max))
            if m > 0:
                self.alpha_base.assign(max(m, 2.0 ** -self.level_frac_bits))
                self.initialized.assign(1.0)
        self.refresh()

    def unobserved(self) -> bool:
        return self.role == 'activation' and self.built and float(ops.convert_to_numpy(self.initialized)) == 0

    def reset_range(self) -> None:
        if self.role == 'activation' and self.built:
            self.abs_max.assign(0.0)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), 'bits': self.n_bits, 'mu': self.mu_init, 'learnable_mu': self.learnable_mu,
                'signed': self.signed, 'share': self.share, 'level_frac_bits': self.level_frac_bits,
                'per_channel': self.per_channel, 'percentile': self.percentile,
                'learnable_alpha': self.learnable_alpha}


# ---- μ sharing ----------------------------------------------------------------------------------------
def mu_groups(model: keras.layers.Layer) -> dict[tuple[str, ...], list[MuLawQuantizer]]:
    """Quantizers that share one μ, keyed by their sharing mode: ('model',), ('kind', role), ('layer', name, role).

    A quantizer's owner is the layer holding it as an attribute (its slot); 'tensor' quantizers share nothing.
    """
    groups: dict[tuple[str, ...], list[MuLawQuantizer]] = {}
    seen: set[int] = set()
    for layer in model._flatten_layers(include_self=True, recursive=True):
        for q in vars(layer).values():
            if not isinstance(q, MuLawQuantizer) or q is layer or id(q) in seen or q.share == 'tensor':
                continue
            seen.add(id(q))
            key = {'model': ('model',), 'kind': ('kind', q.role), 'layer': ('layer', layer.name, q.role)}[q.share]
            groups.setdefault(key, []).append(q)
    return groups


def tie_mu(model: keras.layers.Layer) -> int:
    """Set every group's log μ to the group mean (built members only); returns how many groups were tied."""
    tied = 0
    for members in mu_groups(model).values():
        built = [q for q in members if q.built]
        if len(built) < 2:
            continue
        mean = float(np.mean([np.float64(ops.convert_to_numpy(q.log_mu)) for q in built]))
        for q in built:
            q.log_mu.assign(mean)
        tied += 1
    return tied


class TieMu(keras.callbacks.Callback):
    """Keep the μ of each sharing group equal: tie at the start of training and after every batch.

    Why a callback: Keras saves and restores each quantizer's own variables, so a variable shared by
    several layers would come apart on load; the groups follow from the saved configs, and tying after
    each optimizer step gives every member the same μ in every forward pass (with SGD, exactly a shared
    μ whose gradient is the members' mean). On JAX it syncs the training state first, so the tied
    values are the ones the next step reads.
    """

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._tie()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self._tie()

    def _tie(self) -> None:
        sync = getattr(self.model, 'jax_state_sync', None)
        if sync is not None:
            sync()
        tie_mu(self.model)


register_scheme('mulaw', MuLawQuantizer)
