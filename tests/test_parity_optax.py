"""``rmsprop(...)`` and the presets against ``optax.rmsprop`` on every option they share.

Reference: Optax 0.2.8's ``optax.rmsprop`` (learning_rate incl. schedules,
decay, eps, initial_scale, eps_in_sqrt, centered, momentum, nesterov,
bias_correction), driven by :mod:`rmsprop_optax.parity`; tolerance:
``_harness.BOUNDS`` (float32 1e-5, float64 1e-10, max relative trajectory error).
"""

from __future__ import annotations

import inspect

import optax
import pytest
from _harness import BOUNDS, LONG_STEPS, PARITY_STEPS

from rmsprop_optax import parity, rmsprop

# Every shared option at once also runs LONG_STEPS.
LONG = ('everything shared',)

CASES = {case.name: case for case in parity.optax_cases()}


@pytest.mark.parametrize('dtype', ['float32', 'float64'])
@pytest.mark.parametrize('name', sorted(CASES))
def test_matches_optax_rmsprop(name, dtype):
  err = parity.measure(CASES[name], dtype, PARITY_STEPS)
  assert err <= BOUNDS[dtype], f'{name} {dtype}: max relative error {err:.3e}'


@pytest.mark.parametrize('dtype', ['float32', 'float64'])
@pytest.mark.parametrize('name', LONG)
def test_matches_optax_rmsprop_over_1000_steps(name, dtype):
  err = parity.measure(CASES[name], dtype, LONG_STEPS)
  assert err <= BOUNDS[dtype], f'{name} {dtype}: max relative error {err:.3e}'


def test_every_shared_option_is_exercised():
  """Each keyword of optax.rmsprop appears, with a non-default value, in some case."""
  shared = set(inspect.signature(optax.rmsprop).parameters)
  assert shared <= set(inspect.signature(rmsprop).parameters)
  exercised = {'learning_rate'}
  for case in parity.optax_cases():
    kwargs = case.kwargs
    defaults = inspect.signature(optax.rmsprop).parameters
    exercised |= {k for k, v in kwargs.items() if k != 'learning_rate' and v != defaults[k].default}
  assert exercised == shared, shared - exercised


def test_defaults_agree_with_optax():
  ours = inspect.signature(rmsprop).parameters
  for name, p in inspect.signature(optax.rmsprop).parameters.items():
    assert ours[name].default == p.default, name
