"""A model built with default settings trains to within a few percent of its float twin."""

import keras
import numpy as np

from hgq.data.toy import make_toy_jets
from hgq.layers import QDense

TOLERANCE = 0.03  # "within a few percent" (absolute accuracy)


def accuracy_after_training(model, x, y, xv, yv):
    model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=['accuracy'])
    model.fit(x, y, epochs=12, batch_size=256, verbose=0)
    return float(np.mean(np.argmax(keras.ops.convert_to_numpy(model(xv, training=False)), axis=1) == yv))


def test_default_hgq_mlp_trains_close_to_its_float_twin():
    x, y = make_toy_jets(12_000, seed=1)
    xv, yv = make_toy_jets(4_000, seed=2)
    float_model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(32, activation='relu'),
                                    keras.layers.Dense(32, activation='relu'), keras.layers.Dense(5)])
    hgq_model = keras.Sequential([keras.Input((16,)), QDense(32, activation='relu'), QDense(32, activation='relu'),
                                  QDense(5, beta=0.0)])
    float_acc = accuracy_after_training(float_model, x, y, xv, yv)
    hgq_acc = accuracy_after_training(hgq_model, x, y, xv, yv)
    assert float_acc > 0.6, f'the float twin did not learn ({float_acc:.3f}); the task is broken'
    assert hgq_acc >= float_acc - TOLERANCE, f'HGQ {hgq_acc:.3f} vs float {float_acc:.3f}'
