"""``presets.keras`` against the real Keras 3 ``keras.optimizers.RMSprop`` (JAX backend).

Reference: Keras itself (``KERAS_BACKEND=jax``, set before keras is imported),
driven by :mod:`rmsprop_optax.parity` on the same regression minibatches, with
``keras.config.floatx`` set to the run's dtype; tolerance: ``_harness.BOUNDS``
(float32 1e-5, float64 1e-10, max relative error of the parameter trajectory).
"""

from __future__ import annotations

import inspect
import os

import pytest
from _harness import BOUNDS, CONTRAST, FLOAT64_BOUND, LONG_STEPS, PARITY_STEPS, contrast, need

os.environ.setdefault('KERAS_BACKEND', 'jax')
keras = need('keras')

from rmsprop_optax import parity, presets, rmsprop  # noqa: E402

# The hardest configurations (a schedule with momentum, centered with decay) also run LONG_STEPS.
LONG = ('ExponentialDecay momentum=0.9', 'CosineDecay centered wd=0.05')
EAGER_STEPS = 100  # Eager Keras dispatches every op: ~5 ms a step.

CASES = {case.name: case for case in parity.keras_cases()}


def test_backend_is_jax():
  assert keras.backend.backend() == 'jax'


@pytest.mark.parametrize(
  ('name', 'dtype'), [(n, d) for n in sorted(CASES) for d in CASES[n].dtypes]
)
def test_keras_preset_matches_keras(name, dtype):
  err = parity.measure(CASES[name], dtype, PARITY_STEPS)
  assert err <= BOUNDS[dtype], f'{name} {dtype}: max relative error {err:.3e}'


@pytest.mark.parametrize('dtype', ['float32', 'float64'])
def test_eager_apply_matches_too(dtype):
  """The matrix jits Keras' stateless_apply; ``optimizer.apply`` op by op agrees as well."""
  kwargs = {'learning_rate': 1e-2, 'momentum': 0.9, 'centered': True, 'weight_decay': 0.05}
  case = parity.Case(
    'keras',
    'eager',
    lambda: presets.keras(**kwargs),
    lambda problem, steps: parity.run_keras(kwargs, problem, steps, eager=True),
  )
  err = parity.measure(case, dtype, EAGER_STEPS)
  assert err <= BOUNDS[dtype], f'{dtype}: max relative error {err:.3e}'


@pytest.mark.parametrize(('name', 'dtype'), [(n, d) for n in LONG for d in CASES[n].dtypes])
def test_keras_preset_matches_keras_over_1000_steps(name, dtype):
  err = parity.measure(CASES[name], dtype, LONG_STEPS)
  assert err <= BOUNDS[dtype], f'{name} {dtype}: max relative error {err:.3e}'


def test_cases_cover_every_option():
  """momentum, centered, decoupled weight_decay, Keras schedules mirrored in Optax."""
  names = ' '.join(CASES)
  for needle in ('momentum=0.9', 'centered', 'weight_decay', 'ExponentialDecay', 'CosineDecay'):
    assert needle in names


def test_argument_names_and_defaults_match_keras():
  keras_sig = inspect.signature(keras.optimizers.RMSprop).parameters
  ours = inspect.signature(presets.keras).parameters
  # `weight_decay_mask` is ours: Keras selects leaves with exclude_from_weight_decay().
  shared = set(ours) - {'weight_decay_mask'}
  assert shared == {'learning_rate', 'rho', 'momentum', 'epsilon', 'centered', 'weight_decay'}
  for name in shared:
    assert ours[name].default == keras_sig[name].default, name


def _contrast(tx, kwargs):
  """Error of ``tx`` against Keras with ``kwargs`` (float64)."""
  return contrast(tx, lambda problem, steps: parity.run_keras(kwargs, problem, steps))


def test_keras_puts_eps_inside_the_root():
  """Conventions table: Keras 3 adds epsilon inside the root (epsilon = 0.1 makes it visible)."""
  kwargs = {'learning_rate': 1e-2, 'epsilon': 0.1}
  outside = rmsprop(1e-2, decay=0.9, eps=0.1, eps_in_sqrt=False)
  assert _contrast(outside, kwargs) > CONTRAST
  assert _contrast(presets.keras(1e-2, epsilon=0.1), kwargs) <= FLOAT64_BOUND


def test_keras_weight_decay_is_decoupled():
  """Conventions table: coupled L2 misses Keras' ``p -= p * wd * lr``."""
  kwargs = {'learning_rate': 1e-2, 'weight_decay': 0.1}
  coupled = rmsprop(1e-2, decay=0.9, eps=1e-7, weight_decay=0.1)
  assert _contrast(coupled, kwargs) > CONTRAST
  assert _contrast(presets.keras(1e-2, weight_decay=0.1), kwargs) <= FLOAT64_BOUND
