"""Faults and bad input: what the optimizer does when things go wrong.

- ``optax.apply_if_finite``: a NaN or Inf gradient leaves params and the
  wrapped state bit-identical (reference: the values before the bad step), and
  training continues exactly as if the bad step never came (reference: the
  same run without the bad gradients; tolerance: none, bit for bit).
- Step counts saturate at 2**31 - 1 (set near the limit by replacing them in
  the state) and the bias correction stays finite there; reference:
  ``_harness.RmspropReference`` started at that count (float64, where
  ``1 - decay**t -> 1``), tolerance ``SATURATED_RTOL``.
- float16 / bfloat16 params: float32 state, updates in the param dtype, loss drops.
- ``eps = 0`` with zero gradients: exactly 0, never NaN.

Bad input (hyperparameters, trees, gradient dtypes) is in ``test_errors.py``.
"""

from __future__ import annotations

import math

import _optimizer_zoo as zoo
import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _harness import RmspropReference, bits

import rmsprop_optax
from rmsprop_optax import presets

INT32_MAX = 2**31 - 1
SATURATED_RTOL = 1e-6  # float32 vs float64 closed form at the saturated count.
STEPS = 8  # room for good steps before, between and after the bad ones
BAD_STEPS = {2: math.nan, 5: math.inf}  # step -> value written into one gradient element


def _params():
  return {'w': jnp.linspace(-1.0, 1.0, 12).reshape(3, 4), 'b': jnp.full((4,), 0.5)}


def _grads(step: int, params):
  key = jax.random.fold_in(jax.random.key(0), step)
  return jax.tree.map(lambda p: p + 0.3 * jax.random.normal(key, p.shape, p.dtype), params)


@pytest.mark.parametrize('name', zoo.OPTIMIZERS)
def test_apply_if_finite_skips_bad_steps_bit_for_bit(name):
  opt = optax.apply_if_finite(zoo.make(name), max_consecutive_errors=3)
  step = jax.jit(lambda g, s, p: opt.update(g, s, p))

  def run(with_bad: bool):
    params = _params()
    state = opt.init(params)
    for t in range(STEPS):
      if t in BAD_STEPS and not with_bad:
        continue
      grads = _grads(t, params)
      if t in BAD_STEPS:
        grads['w'] = grads['w'].at[1, 2].set(BAD_STEPS[t])
        before = bits((params, state.inner_state))
      updates, state = step(grads, state, params)
      params = optax.apply_updates(params, updates)
      if t in BAD_STEPS:
        assert not bool(state.last_finite)
        chex.assert_trees_all_equal(updates, jax.tree.map(jnp.zeros_like, updates))
        for a, b in zip(before, bits((params, state.inner_state))):
          np.testing.assert_array_equal(a, b)
      else:
        assert bool(state.last_finite)
    return params, state

  p_bad, s_bad = run(with_bad=True)
  p_ref, s_ref = run(with_bad=False)
  assert int(s_bad.total_notfinite) == len(BAD_STEPS) and int(s_ref.total_notfinite) == 0
  for a, b in zip(bits((p_bad, s_bad.inner_state)), bits((p_ref, s_ref.inner_state))):
    np.testing.assert_array_equal(a, b)


def test_without_apply_if_finite_nan_poisons_the_state():
  """Documents why apply_if_finite is needed: a NaN gradient element stays in nu."""
  opt = rmsprop_optax.rmsprop(1e-2)
  params = _params()
  state = opt.init(params)
  grads = jax.tree.map(jnp.ones_like, params)
  grads['w'] = grads['w'].at[0, 0].set(jnp.nan)
  _, state = opt.update(grads, state, params)
  nu = rmsprop_optax.find_rms_state(state).nu
  assert np.isnan(nu['w'][0, 0]) and np.isfinite(np.asarray(nu['w']).ravel()[1:]).all()


def _set_counts(state, value):
  """Replaces every int32 scalar (the step counts) in an optimizer state."""
  return jax.tree.map(
    lambda x: jnp.asarray(value, jnp.int32) if x.dtype == jnp.int32 and x.ndim == 0 else x, state
  )


@pytest.mark.parametrize('name', zoo.OPTIMIZERS)
def test_counts_saturate_instead_of_wrapping(name):
  opt = zoo.make(name)
  params = _params()
  state = _set_counts(opt.init(params), INT32_MAX - 2)
  counts0 = [x for x in jax.tree.leaves(state) if x.dtype == jnp.int32]
  assert counts0, 'every optimizer here counts steps somewhere'
  step = jax.jit(lambda g, s, p: opt.update(g, s, p))
  for t in range(4):
    updates, state = step(_grads(t, params), state, params)
    chex.assert_tree_all_finite(updates)
    params = optax.apply_updates(params, updates)
  counts = [int(x) for x in jax.tree.leaves(state) if x.dtype == jnp.int32]
  assert counts == [INT32_MAX] * len(counts0), counts


@pytest.mark.parametrize('centered', [False, True])
@pytest.mark.parametrize('decay', [0.9, 0.999, 0.999999])
def test_bias_correction_finite_at_saturated_count(decay, centered):
  """At t = 2**31 - 1, 1 - decay**t is 1 in float64: the step is the uncorrected one."""
  make = rmsprop_optax.scale_by_centered_rms if centered else rmsprop_optax.scale_by_rms
  tx = make(decay, 1e-8, bias_correction=True)
  g = jnp.array([0.5, -2.0, 1e-3])
  state = tx.init(g)._replace(count=jnp.asarray(INT32_MAX - 1, jnp.int32))
  nu0 = np.array([0.3, 4.0, 1e-5])
  state = state._replace(nu=jnp.asarray(nu0, jnp.float32))
  out, state = jax.jit(tx.update)(g, state)
  assert int(state.count) == INT32_MAX
  # The reference at learning rate 1, from the same count and nu.
  ref = RmspropReference(1.0, decay, 1e-8, centered=centered, bias_correction=True)
  zero = {'g': np.zeros(3)}
  ref.init(zero)
  ref.nu['g'], ref.count = nu0.copy(), INT32_MAX - 1
  expected = -ref.update({'g': np.asarray(g, np.float64)}, zero)['g']
  chex.assert_tree_all_finite(out)
  np.testing.assert_allclose(np.asarray(out), expected, rtol=SATURATED_RTOL)


# Each preset at a learning rate that moves 16-bit params (bf16 spacing at 1
# is 2**-7: a 1e-4 step is below it, which is the params' precision, not the
# optimizer's).
SIXTEEN_BIT = {
  'pytorch': lambda: presets.pytorch(lr=1e-2, momentum=0.5),
  'keras': lambda: presets.keras(learning_rate=1e-2, momentum=0.5, centered=True),
  'tf1': lambda: presets.tf1(1e-2, momentum=0.5),
  'timm_tf': lambda: presets.timm_tf(lr=1e-1, momentum=0.5),  # nu starts at 1
  'graves2013': lambda: presets.graves2013(learning_rate=1e-2),
  'dqn_nature': lambda: presets.dqn_nature(learning_rate=1e-2),
  'lasagne': lambda: presets.lasagne(learning_rate=1e-2),
}


@pytest.mark.parametrize('dtype', [jnp.float16, jnp.bfloat16])
@pytest.mark.parametrize('name', SIXTEEN_BIT)
def test_16bit_params_train_with_float32_state(name, dtype):
  opt = SIXTEEN_BIT[name]()
  target = jnp.linspace(-2.0, 2.0, 16, dtype=jnp.float32)
  params = {'x': jnp.zeros(16, dtype)}
  loss = lambda p: jnp.mean((p['x'].astype(jnp.float32) - target) ** 2)
  state = opt.init(params)

  @jax.jit
  def step(params, state):
    grads = jax.grad(loss)(params)
    updates, state = opt.update(grads, state, params)
    return optax.apply_updates(params, updates), state, updates

  first = float(loss(params))
  for _ in range(60):
    params, state, updates = step(params, state)
  assert updates['x'].dtype == dtype and params['x'].dtype == dtype
  for leaf in jax.tree.leaves(state):
    assert leaf.dtype in (jnp.float32, jnp.int32), leaf.dtype
  assert float(loss(params)) < 0.5 * first


@pytest.mark.parametrize(
  'make',
  [
    lambda: rmsprop_optax.scale_by_rms(0.9, 0.0),
    lambda: rmsprop_optax.scale_by_rms(0.9, 0.0, eps_in_sqrt=False, bias_correction=True),
    lambda: rmsprop_optax.scale_by_centered_rms(0.9, 0.0),
    lambda: rmsprop_optax.scale_by_centered_rms(0.9, 0.0, bias_correction=True),
    lambda: rmsprop_optax.rmsprop(0.1, eps=0.0, momentum=0.9, nesterov=True, centered=True),
    lambda: presets.pytorch(eps=0.0, momentum=0.9, centered=True),
    lambda: presets.keras(epsilon=0.0, momentum=0.9),
    lambda: presets.tf1(0.1, epsilon=0.0),
  ],
)
@pytest.mark.parametrize('jit', [False, True])
def test_eps_zero_with_zero_gradients_gives_zero_not_nan(make, jit):
  tx = make()
  params = {'w': jnp.ones(4), 'z': jnp.ones(3)}
  state = tx.init(params)
  update = jax.jit(tx.update) if jit else tx.update
  for g in (0.0, 1.0, 0.0):  # zero grads before and after a nonzero one for 'w'
    grads = {'w': jnp.array([g, 0.0, g, 0.0]), 'z': jnp.zeros(3)}
    out, state = update(grads, state, params)
    chex.assert_tree_all_finite(out)
    np.testing.assert_array_equal(np.asarray(out['z']), 0.0)
    np.testing.assert_array_equal(np.asarray(out['w'])[[1, 3]], 0.0)
