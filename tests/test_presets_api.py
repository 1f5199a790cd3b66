"""Preset signatures (framework names and defaults), schedules, ``optax.apply_if_finite``.

References: the frameworks' signatures as their sources define them (torch
and Keras are also compared with ``inspect.signature`` in
tests/test_parity_torch.py and tests/test_parity_keras.py),
``optax.inject_hyperparams`` for schedules, and the untouched previous state
for non-finite gradients. Tolerance: SCHEDULE_RTOL.
"""

from __future__ import annotations

import inspect

import chex
import jax
import numpy as np
import optax
import pytest
from _harness import normal_grads, run_loop, small_params

from rmsprop_optax import presets

_REQUIRED = inspect.Parameter.empty
# Signatures and defaults of the sources, most of which cannot be inspected here.
DOCUMENTED_DEFAULTS = {
  # tf.compat.v1.train.RMSPropOptimizer (tensorflow/python/training/rmsprop.py).
  'tf1': {
    'learning_rate': _REQUIRED,
    'decay': 0.9,
    'momentum': 0.0,
    'epsilon': 1e-10,
    'centered': False,
  },
  # timm's RMSpropTF (timm/optim/rmsprop_tf.py).
  'timm_tf': {
    'lr': 1e-2,
    'alpha': 0.9,
    'eps': 1e-10,
    'weight_decay': 0.0,
    'momentum': 0.0,
    'centered': False,
    'decoupled_decay': False,
    'lr_in_momentum': True,
  },
  # Graves 2013 (arXiv:1308.0850): eq. 38-41 and the values used with them.
  'graves2013': {'learning_rate': 1e-4, 'decay': 0.95, 'momentum': 0.9, 'eps': 1e-4},
  # Mnih et al. 2015 (Nature), Extended Data Table 1 and the Lua code (NeuralQLearner.lua).
  'dqn_nature': {'learning_rate': 2.5e-4, 'decay': 0.95, 'eps': 0.01},
  # lasagne.updates.rmsprop (lasagne/updates.py).
  'lasagne': {'learning_rate': 1.0, 'rho': 0.9, 'epsilon': 1e-6},
  # Also checked against the installed frameworks in test_parity_{torch,keras}.py.
  'pytorch': {
    'lr': 1e-2,
    'alpha': 0.99,
    'eps': 1e-8,
    'weight_decay': 0.0,
    'momentum': 0.0,
    'centered': False,
    'maximize': False,
  },
  # bitsandbytes.optim.RMSprop8bit (optim/rmsprop.py); checked in test_parity_bitsandbytes.py.
  'bitsandbytes': {
    'lr': 1e-2,
    'alpha': 0.99,
    'eps': 1e-8,
    'weight_decay': 0.0,
    'optim_bits': 8,
    'min_8bit_size': 4096,
    'momentum': 0,
    'centered': False,
  },
  'keras': {
    'learning_rate': 1e-3,
    'rho': 0.9,
    'momentum': 0.0,
    'epsilon': 1e-7,
    'centered': False,
    'weight_decay': None,
    'weight_decay_mask': None,
  },
}
LR_NAME = {name: next(iter(d)) for name, d in DOCUMENTED_DEFAULTS.items()}
# Every preset with its optional features on, so the checks below see all state.
FULL = {
  'pytorch': dict(momentum=0.9, centered=True, weight_decay=0.01),
  'keras': dict(momentum=0.9, centered=True, weight_decay=0.01),
  'tf1': dict(momentum=0.9, centered=True),
  'timm_tf': dict(momentum=0.9, centered=True, weight_decay=0.01, decoupled_decay=True),
  'graves2013': {},
  'dqn_nature': {},
  'lasagne': {},
  'bitsandbytes': dict(weight_decay=0.01),
}
# Structural arguments (state layout, refused options) that cannot be traced.
STATIC = {'bitsandbytes': ('optim_bits', 'min_8bit_size', 'momentum')}
SCHEDULE_RTOL = 1e-5  # float32: the two paths round the lr product differently.
SCHEDULE_STEPS = 20  # the lr schedule falls by 0.9**20 ~ 0.12 over the run


def test_every_preset_is_covered():
  assert set(DOCUMENTED_DEFAULTS) == set(presets.__all__) == set(FULL)


@pytest.mark.parametrize('name', sorted(DOCUMENTED_DEFAULTS))
def test_names_and_defaults(name):
  params = inspect.signature(getattr(presets, name)).parameters
  assert {k: p.default for k, p in params.items()} == DOCUMENTED_DEFAULTS[name]


def _grads(t: int):
  return normal_grads(small_params(), t)


def _run(tx, steps):
  return run_loop(tx, small_params(), lambda _, t: _grads(t), steps, jit=True)[0]


@pytest.mark.parametrize('name', sorted(FULL))
def test_learning_rate_schedule_equals_injected_learning_rate(name):
  """``preset(lr=schedule)`` reads the schedule as ``inject_hyperparams`` feeds it (count before the increment)."""
  preset = getattr(presets, name)
  lr = LR_NAME[name]
  schedule = lambda count: 1e-2 * 0.9**count  # noqa: E731
  scheduled = preset(**{lr: schedule}, **FULL[name])
  injected = optax.inject_hyperparams(preset, static_args=STATIC.get(name, ()))(
    **{lr: schedule}, **FULL[name]
  )
  a, b = _run(scheduled, SCHEDULE_STEPS), _run(injected, SCHEDULE_STEPS)
  chex.assert_trees_all_close(a, b, rtol=SCHEDULE_RTOL)
  # And the schedule is not ignored: a constant lr gives another trajectory.
  constant = _run(preset(**{lr: 1e-2}, **FULL[name]), SCHEDULE_STEPS)
  assert not np.allclose(a['w'], constant['w'], rtol=1e-3)


@pytest.mark.parametrize('bad', [np.nan, np.inf])
@pytest.mark.parametrize('name', sorted(FULL))
def test_apply_if_finite_skips_non_finite_steps(name, bad):
  """A NaN or inf gradient leaves the params and the preset's state untouched."""
  tx = optax.apply_if_finite(getattr(presets, name)(**{LR_NAME[name]: 1e-2}, **FULL[name]), 3)
  params = small_params()
  state = tx.init(params)
  updates, state = tx.update(_grads(0), state, params)
  params = optax.apply_updates(params, updates)

  g_bad = _grads(1)
  g_bad['w'] = g_bad['w'].at[0, 1].set(bad)
  bad_updates, bad_state = jax.jit(tx.update)(g_bad, state, params)
  chex.assert_trees_all_equal(optax.apply_updates(params, bad_updates), params)
  chex.assert_trees_all_equal(bad_state.inner_state, state.inner_state)
  assert int(bad_state.notfinite_count) == 1

  # The next finite step continues as if the bad one had never happened.
  after_skip = tx.update(_grads(2), bad_state, params)[0]
  without_bad = tx.update(_grads(2), state, params)[0]
  chex.assert_trees_all_equal(after_skip, without_bad)
