"""Shared test setup: the backend comes from KERAS_BACKEND; every test starts from a fixed seed."""

import keras
import pytest


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """Fixed seeds, so each test is reproducible on its own (no clear_session: it costs 0.5 s on TensorFlow)."""
    keras.utils.set_random_seed(1234)
    yield
