"""TF1, timm ``RMSpropTF``, Graves 2013, DQN and Lasagne presets against float64 references.

Reference: :mod:`framework_refs` (float64 NumPy, each framework's update in its
own arithmetic order, written from the framework's source file or paper), run on
the float64 version of :class:`rmsprop_optax.parity.Regression`. Tolerance:
float64 runs within ``FLOAT64_BOUND`` and float32 runs within ``FLOAT32_BOUND``
of the float64 reference (max relative trajectory error, max over steps and
leaves of ``max|ours - ref| / max|ref|``; ``_harness.max_rel_error``).
Learning rates change every step in most cases, so lr placement matters.
"""

from __future__ import annotations

import framework_refs as refs
import pytest
from _harness import (
  BOUNDS,
  CONTRAST,
  CONTRAST_STEPS,
  FLOAT64_BOUND,
  LONG_STEPS,
  PARITY_STEPS,
  max_rel_error,
  schedule_pair,
  trajectory,
)

from rmsprop_optax import parity, presets, rmsprop


def _cosine(lr0: float, period: int = 50):
  """A learning rate that changes every step: ``lr0 (0.6 + 0.4 cos(2 pi t / period))``.

  Returns the Optax schedule (float count, so float64 under x64) and the same
  function in NumPy for the reference.
  """

  def formula(count, xp):
    c = xp.asarray(count, xp.result_type(float))
    return lr0 * (0.6 + 0.4 * xp.cos(2 * xp.pi * c / period))

  return schedule_pair(formula)


def _case(preset, ref, kwargs, lr_name=None, lr0=None):
  """(ours, reference) factories; ``lr_name`` gets the cosine schedule from ``lr0``."""

  def ours():
    kw = dict(kwargs)
    if lr_name:
      kw[lr_name] = _cosine(lr0)[0]
    return preset(**kw)

  def reference():
    kw = dict(kwargs)
    if lr_name:
      kw[lr_name] = _cosine(lr0)[1]
    return ref(**kw)

  return ours, reference


CASES = {
  # TF1: ones-initialised ms, eps inside, lr inside the momentum buffer.
  'tf1 lr=1e-2': _case(presets.tf1, refs.TF1, {'learning_rate': 1e-2}),
  'tf1 EfficientNet momentum=0.9 epsilon=1e-3': _case(
    presets.tf1, refs.TF1, {'momentum': 0.9, 'epsilon': 1e-3}, 'learning_rate', 1e-2
  ),
  'tf1 Inception epsilon=1.0': _case(
    presets.tf1, refs.TF1, {'momentum': 0.9, 'epsilon': 1.0}, 'learning_rate', 4.5e-2
  ),
  'tf1 centered momentum=0.9': _case(
    presets.tf1,
    refs.TF1,
    {'momentum': 0.9, 'centered': True, 'decay': 0.95},
    'learning_rate',
    3e-3,
  ),
  # timm RMSpropTF.
  'timm_tf defaults': _case(presets.timm_tf, refs.TimmRMSpropTF, {}),
  'timm_tf momentum lr_in_momentum=True': _case(
    presets.timm_tf, refs.TimmRMSpropTF, {'momentum': 0.9, 'eps': 1e-3}, 'lr', 1e-2
  ),
  'timm_tf momentum lr_in_momentum=False': _case(
    presets.timm_tf,
    refs.TimmRMSpropTF,
    {'momentum': 0.9, 'eps': 1e-3, 'lr_in_momentum': False},
    'lr',
    1e-2,
  ),
  'timm_tf coupled weight_decay': _case(
    presets.timm_tf, refs.TimmRMSpropTF, {'weight_decay': 0.05, 'momentum': 0.5}, 'lr', 1e-2
  ),
  'timm_tf decoupled_decay': _case(
    presets.timm_tf,
    refs.TimmRMSpropTF,
    {'weight_decay': 0.5, 'decoupled_decay': True, 'momentum': 0.9},
    'lr',
    1e-2,
  ),
  'timm_tf centered lr_in_momentum=False': _case(
    presets.timm_tf,
    refs.TimmRMSpropTF,
    {'centered': True, 'momentum': 0.9, 'eps': 1e-3, 'lr_in_momentum': False},
    'lr',
    3e-3,
  ),
  # Graves 2013 / Chainer RMSpropGraves.
  'graves2013 defaults': _case(presets.graves2013, refs.Graves2013, {}),
  'graves2013 lr schedule': _case(presets.graves2013, refs.Graves2013, {}, 'learning_rate', 3e-3),
  # DQN (Nature 2015, Lua code).
  'dqn_nature defaults': _case(presets.dqn_nature, refs.DQNLua, {}),
  'dqn_nature lr schedule': _case(presets.dqn_nature, refs.DQNLua, {}, 'learning_rate', 1e-2),
  # Lasagne.
  'lasagne lr=1e-2': _case(presets.lasagne, refs.Lasagne, {'learning_rate': 1e-2}),
  'lasagne lr schedule rho=0.95': _case(
    presets.lasagne, refs.Lasagne, {'rho': 0.95}, 'learning_rate', 1e-2
  ),
}
LONG = ('tf1 centered momentum=0.9', 'timm_tf decoupled_decay')


def _error(ours, reference, dtype, steps, request):
  if dtype == 'float64':
    request.getfixturevalue('x64')
  actual = parity.run_optax(ours(), parity.Regression(dtype), steps)
  problem64 = parity.Regression('float64')
  expected = trajectory(reference(), problem64.init, problem64.grad, steps)
  moved = max_rel_error(expected[-1], problem64.init)
  assert moved > 1e-3, f'the parameters barely moved ({moved:.1e}): a vacuous comparison'
  # A list of per-step trees: each step normalised by its own scale.
  return max_rel_error(actual, expected)


@pytest.mark.parametrize('dtype', ['float32', 'float64'])
@pytest.mark.parametrize('name', sorted(CASES))
def test_preset_matches_reference(name, dtype, request):
  err = _error(*CASES[name], dtype, PARITY_STEPS, request)
  assert err <= BOUNDS[dtype], f'{name} {dtype}: max relative error {err:.3e}'


@pytest.mark.parametrize('dtype', ['float32', 'float64'])
@pytest.mark.parametrize('name', LONG)
def test_preset_matches_reference_over_1000_steps(name, dtype, request):
  err = _error(*CASES[name], dtype, LONG_STEPS, request)
  assert err <= BOUNDS[dtype], f'{name} {dtype}: max relative error {err:.3e}'


# -- each convention is visible: the wrong one misses the reference ------------

_SCHED, _NP_SCHED = _cosine(1e-2)


def _contrast(tx, reference, request):
  return _error(lambda: tx, reference, 'float64', CONTRAST_STEPS, request)


def test_tf1_accumulator_starts_at_one(request):
  ref = lambda: refs.TF1(_NP_SCHED, momentum=0.9, epsilon=1e-3)  # noqa: E731
  zeros = rmsprop(_SCHED, decay=0.9, eps=1e-3, momentum=0.9, initial_scale=0.0)
  assert _contrast(zeros, ref, request) > CONTRAST
  assert _contrast(presets.tf1(_SCHED, momentum=0.9, epsilon=1e-3), ref, request) <= FLOAT64_BOUND


def test_tf1_puts_eps_inside_the_root(request):
  ref = lambda: refs.TF1(_NP_SCHED, momentum=0.9, epsilon=1.0)  # noqa: E731
  outside = rmsprop(_SCHED, decay=0.9, eps=1.0, momentum=0.9, initial_scale=1.0, eps_in_sqrt=False)
  assert _contrast(outside, ref, request) > CONTRAST


def test_tf1_puts_lr_inside_the_momentum_buffer(request):
  ref = lambda: refs.TF1(_NP_SCHED, momentum=0.9, epsilon=1e-3)  # noqa: E731
  outside = rmsprop(
    _SCHED, decay=0.9, eps=1e-3, momentum=0.9, initial_scale=1.0, lr_in_momentum=False
  )
  assert _contrast(outside, ref, request) > CONTRAST


@pytest.mark.parametrize('lr_in_momentum', [True, False])
def test_timm_lr_in_momentum_flag_matters(lr_in_momentum, request):
  ref = lambda: refs.TimmRMSpropTF(
    _NP_SCHED,
    momentum=0.9,
    eps=1e-3,  # noqa: E731
    lr_in_momentum=lr_in_momentum,
  )
  wrong = presets.timm_tf(_SCHED, momentum=0.9, eps=1e-3, lr_in_momentum=not lr_in_momentum)
  right = presets.timm_tf(_SCHED, momentum=0.9, eps=1e-3, lr_in_momentum=lr_in_momentum)
  assert _contrast(wrong, ref, request) > CONTRAST
  assert _contrast(right, ref, request) <= FLOAT64_BOUND


def test_timm_decoupled_decay_differs_from_coupled(request):
  ref = lambda: refs.TimmRMSpropTF(_NP_SCHED, weight_decay=0.5, decoupled_decay=True)  # noqa: E731
  coupled = presets.timm_tf(_SCHED, weight_decay=0.5, decoupled_decay=False)
  assert _contrast(coupled, ref, request) > CONTRAST


def test_graves_and_dqn_are_centered(request):
  uncentered = rmsprop(_SCHED, decay=0.95, eps=0.01)
  assert _contrast(uncentered, lambda: refs.DQNLua(_NP_SCHED), request) > CONTRAST
  uncentered = rmsprop(_SCHED, decay=0.95, eps=1e-4, momentum=0.9)
  assert _contrast(uncentered, lambda: refs.Graves2013(_NP_SCHED), request) > CONTRAST
