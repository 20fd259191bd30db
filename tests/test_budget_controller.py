"""BudgetController's step rule (lookahead, deadband) and its final-weights choice, on fake cost sequences."""

import keras
import numpy as np
import pytest

import hgq.layers as L
from hgq.training import BudgetController, next_beta, rate_beta

RNG = np.random.default_rng(11)


def test_rate_step_pushes_only_while_the_cost_falls_too_slowly():
    # 8x over budget: the wanted fall is clipped to max_rate (5% per epoch in log)
    assert rate_beta(1e-5, 8000.0, None, 1000.0) == pytest.approx(2e-5)  # no trend yet: push
    assert rate_beta(1e-5, 8000.0, 8000.0, 1000.0) == pytest.approx(2e-5)  # not falling: push
    assert rate_beta(1e-5, 8000.0, 8000.0 * np.exp(0.05), 1000.0) == pytest.approx(1e-5)  # as wanted: hold
    assert rate_beta(1e-5, 8000.0, 8000.0 * np.exp(0.025), 1000.0) == pytest.approx(1e-5 * 2**0.5)
    assert rate_beta(1e-5, 8000.0, 10000.0, 1000.0) == pytest.approx(5e-6)  # falling 22%: relax (÷2 at most)
    # 20% over: wanted fall log(1.2)/10 per epoch
    wanted = np.log(1.2) / 10
    assert rate_beta(1e-5, 1200.0, 1200.0, 1000.0) == pytest.approx(1e-5 * 2 ** (wanted / 0.05))
    # under budget: it wants the cost to rise; rising slower than that relaxes, faster pushes
    assert rate_beta(1e-5, 500.0, 500.0, 1000.0) == pytest.approx(5e-6)
    assert rate_beta(1e-5, 500.0, 500.0 * np.exp(-0.1), 1000.0) == pytest.approx(2e-5)
    assert rate_beta(1e-5, 0.0, 100.0, 1000.0) == pytest.approx(5e-6)  # all pruned: relax
    assert rate_beta(1e-2, 8000.0, None, 1000.0, beta_max=1e-2) == 1e-2


def test_deadband_holds_the_cost_near_the_budget():
    assert rate_beta(1e-5, 1040.0, 1040.0, 1000.0) == pytest.approx(1e-5)  # within 5%, steady: hold
    assert rate_beta(1e-5, 1040.0, 1100.0, 1000.0) < 1e-5  # within 5% but still falling: relax
    assert rate_beta(1e-5, 960.0, 900.0, 1000.0) > 1e-5  # within 5% but still rising: push
    assert rate_beta(1e-5, 1060.0, 1060.0, 1000.0) > 1e-5  # outside: push
    with pytest.raises(ValueError, match='deadband=1.5 in \\[0, 1\\)'):
        BudgetController(1000, 'luts', deadband=1.5)
    with pytest.raises(ValueError, match="mode='pid'; valid modes: rate, proportional"):
        BudgetController(1000, 'luts', mode='pid')


def simulate(controller_step, budget, epochs=200):
    """A plant with the behaviour measured on the jets MLP (bench/train_to_budget.py): the cost falls at a
    rate that grows with beta and saturates (bits shed at the optimizer's pace), with momentum, and regrows
    three times slower than it is shed. Returns the cost per epoch."""
    cost, velocity, beta, previous, costs = 95_000.0, 0.0, 1e-6, None, []
    for _ in range(epochs):
        velocity = 0.7 * velocity + 0.3 * 0.25 * np.tanh(np.log10(beta / 1e-5))
        cost *= np.exp(-velocity if velocity > 0 else -velocity / 3)
        costs.append(cost)
        beta, previous = controller_step(beta, cost, previous, budget), cost
    return np.array(costs)


@pytest.mark.parametrize('budget', [1000.0, 3000.0, 8000.0])
def test_rate_controller_lands_without_the_overshoot_of_the_proportional_one(budget):
    rate = simulate(lambda b, c, p, t: rate_beta(b, c, p, t, beta_max=1e-2), budget)
    proportional = simulate(lambda b, c, p, t: next_beta(b, c, t, beta_max=1e-2), budget)
    assert proportional.min() < 0.5 * budget  # the winding-up that pruned the real 1k design dead
    assert rate.min() > 0.8 * budget
    assert np.all(np.abs(rate[-50:] / budget - 1) < 0.1)


class FakeCost:
    """Returns the next value of a fixed sequence at each epoch end."""

    def __init__(self, values):
        self.values, self.calls = list(values), 0

    def __call__(self, model):
        self.calls += 1
        return self.values[self.calls - 1]


class Score(keras.callbacks.Callback):
    """Writes a fixed per-epoch 'score' into the logs and keeps a copy of the weights at each epoch end."""

    def __init__(self, scores):
        super().__init__()
        self.scores, self.weights = scores, []

    def on_epoch_end(self, epoch, logs=None):
        logs['score'] = self.scores[epoch]
        self.weights.append([w.copy() for w in self.model.get_weights()])


def fit_with(costs, scores, **options):
    inputs = keras.Input((4,))
    model = keras.Model(inputs, L.QDense(3)(inputs))
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss='mse')
    x = RNG.normal(size=(32, 4)).astype('float32')
    y = RNG.normal(size=(32, 3)).astype('float32')
    score = Score(scores)
    controller = BudgetController(1000, 'luts', cost=FakeCost(costs), monitor='score', **options)
    model.fit(x, y, batch_size=8, epochs=len(costs), verbose=0, callbacks=[score, controller])
    return model, controller, score


def test_restore_best_keeps_the_best_epoch_within_budget():
    # epoch 2 scores best but is over budget; epoch 4 is the best within budget (1040 <= 1000 * 1.05)
    costs = [3000.0, 1500.0, 990.0, 1040.0, 700.0]
    scores = [0.1, 0.9, 0.5, 0.6, 0.55]
    model, controller, score = fit_with(costs, scores)
    assert controller.best_epoch == 4 and controller.best_value == pytest.approx(0.6)
    for got, want in zip(model.get_weights(), score.weights[3]):
        np.testing.assert_array_equal(got, want)
    assert any(not np.array_equal(a, b) for a, b in zip(score.weights[3], score.weights[-1]))
    assert float(model.layers[-1].beta) == pytest.approx(controller.history[3][0])  # the beta of that epoch


def test_restore_best_keeps_the_last_epoch_when_none_is_within_budget():
    model, controller, score = fit_with([3000.0, 2500.0, 2000.0], [0.3, 0.2, 0.1])
    assert controller.best_epoch is None
    for got, want in zip(model.get_weights(), score.weights[-1]):
        np.testing.assert_array_equal(got, want)
    model, controller, score = fit_with([900.0, 800.0, 2000.0], [0.3, 0.2, 0.1], restore_best=False)
    assert controller.best_epoch is None
    for got, want in zip(model.get_weights(), score.weights[-1]):
        np.testing.assert_array_equal(got, want)


def test_restore_best_without_the_monitor_warns_and_keeps_the_last_epoch():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, L.QDense(3)(inputs))
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss='mse')
    x = RNG.normal(size=(16, 4)).astype('float32')
    controller = BudgetController(1000, 'luts', cost=FakeCost([500.0, 400.0]))
    with pytest.warns(UserWarning, match="restore_best monitors 'val_accuracy', which the epoch logs lack"):
        model.fit(x, x[:, :3], batch_size=8, epochs=2, verbose=0, callbacks=[controller])
    assert controller.best_epoch is None
