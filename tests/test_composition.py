"""``rmsprop`` inside the rest of Optax: chain, inject_hyperparams, MultiSteps, masked, apply_if_finite.

References: the same optimizer driven by hand (clipping applied to the
gradients first, accumulated gradients averaged by hand, and so on).
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _harness import run_loop, small_params

import rmsprop_optax

RTOL = 1e-6  # float32, same arithmetic in a different composition
STEPS = 12  # enough for momentum and the moving averages to shape the trajectory


def quadratic_grads(params, t):
  """Gradients of sum(0.5 * a * p^2) plus a deterministic wobble."""
  return jax.tree.map(
    lambda p: (1.0 + jnp.arange(p.size).reshape(p.shape)) * p + jnp.sin(t + p), params
  )


PARAMS = small_params()


def run(opt, steps=STEPS, grad_fn=quadratic_grads):
  """This file's problem (PARAMS, quadratic_grads) in a Python loop: final params and state."""
  return run_loop(opt, PARAMS, grad_fn, steps)


def test_chain_with_clipping_equals_clipping_by_hand():
  opt = rmsprop_optax.rmsprop(1e-2, momentum=0.9)
  chained = optax.chain(optax.clip_by_global_norm(0.5), opt)
  clip = optax.clip_by_global_norm(0.5)
  by_hand = run(opt, grad_fn=lambda p, t: clip.update(quadratic_grads(p, t), clip.init(p))[0])[0]
  chex.assert_trees_all_close(run(chained)[0], by_hand, rtol=RTOL)
  # Clipping changes the trajectory (so the comparison above means something).
  assert not np.allclose(run(opt)[0]['w'], by_hand['w'])


def test_chain_with_add_decayed_weights_equals_coupled_weight_decay():
  """``optax.add_decayed_weights`` before the rescaling is our coupled L2."""
  ours = rmsprop_optax.rmsprop(1e-2, weight_decay=0.1)
  chained = optax.chain(optax.add_decayed_weights(0.1), rmsprop_optax.rmsprop(1e-2))
  chex.assert_trees_all_close(run(ours)[0], run(chained)[0], rtol=RTOL)


@pytest.mark.parametrize('centered', [False, True])
def test_inject_hyperparams_matches_plain_alias_and_does_not_recompile(centered):
  injected = optax.inject_hyperparams(rmsprop_optax.rmsprop, static_args=('centered',))(
    learning_rate=1e-2, decay=0.9, momentum=0.5, centered=centered
  )
  params = PARAMS
  state = injected.init(params)
  chex.clear_trace_counter()  # chex counts per code location, across parametrizations

  @jax.jit
  @chex.assert_max_traces(n=1)
  def step(params, state, t):
    updates, state = injected.update(quadratic_grads(params, t), state, params)
    return optax.apply_updates(params, updates), state

  lrs = [1e-2, 1e-2, 3e-3, 3e-3, 5e-2, 5e-2]
  for t, lr in enumerate(lrs):
    state.hyperparams['learning_rate'] = jnp.asarray(lr, jnp.float32)
    params, state = step(params, state, t)

  # The same learning rates as a schedule on the plain alias.
  plain = rmsprop_optax.rmsprop(lambda c: jnp.asarray(lrs)[c], momentum=0.5, centered=centered)
  want = run(plain, steps=len(lrs))[0]
  chex.assert_trees_all_close(params, want, rtol=RTOL)


def test_inject_hyperparams_eps_and_decay_as_arrays():
  injected = optax.inject_hyperparams(rmsprop_optax.rmsprop)(
    learning_rate=1e-2, decay=0.8, eps=1e-4, bias_correction=True
  )
  plain = rmsprop_optax.rmsprop(1e-2, decay=0.8, eps=1e-4, bias_correction=True)
  chex.assert_trees_all_close(run(injected)[0], run(plain)[0], rtol=RTOL)
  assert isinstance(rmsprop_optax.find_rms_state(run(injected)[1]), rmsprop_optax.ScaleByRmsState)


def test_multisteps_equals_averaged_gradients():
  k = 3
  opt = rmsprop_optax.rmsprop(1e-2, momentum=0.9, centered=True)
  multi = optax.MultiSteps(opt, every_k_schedule=k)
  params = PARAMS
  state = multi.init(params)
  ref_params = PARAMS
  ref_state = opt.init(ref_params)
  acc = []
  for t in range(4 * k):
    g = quadratic_grads(params, t)
    updates, state = multi.update(g, state, params)
    params = optax.apply_updates(params, updates)
    acc.append(g)
    if len(acc) == k:
      mean = jax.tree.map(lambda *gs: sum(gs) / k, *acc)
      u, ref_state = opt.update(mean, ref_state, ref_params)
      ref_params = optax.apply_updates(ref_params, u)
      acc = []
      chex.assert_trees_all_close(params, ref_params, rtol=1e-5)
  assert int(rmsprop_optax.find_rms_state(state).count) == 4


def test_masked_leaves_untouched_state_only_for_unmasked():
  opt = optax.masked(rmsprop_optax.rmsprop(1e-2), {'w': True, 'b': False})
  params = PARAMS
  state = opt.init(params)
  g = quadratic_grads(params, 0)
  updates, state = opt.update(g, state, params)
  # optax.masked passes masked-out updates through unchanged.
  chex.assert_trees_all_equal(updates['b'], g['b'])
  want = rmsprop_optax.rmsprop(1e-2)
  w_updates, _ = want.update({'w': g['w']}, want.init({'w': params['w']}), {'w': params['w']})
  chex.assert_trees_all_close(updates['w'], w_updates['w'], rtol=RTOL)
  nu = rmsprop_optax.find_rms_state(state).nu
  assert isinstance(nu['b'], optax.MaskedNode)


def test_apply_if_finite_skips_nan_and_inf_steps():
  opt = optax.apply_if_finite(
    rmsprop_optax.rmsprop(1e-2, momentum=0.9, centered=True), max_consecutive_errors=5
  )
  params = PARAMS
  state = opt.init(params)
  good = quadratic_grads(params, 0)
  updates, state = opt.update(good, state, params)
  params = optax.apply_updates(params, updates)
  before_params, before_state = params, state
  for bad_value in (jnp.nan, jnp.inf, -jnp.inf):
    bad = jax.tree.map(lambda g, v=bad_value: g.at[0].set(v), good)
    updates, state = opt.update(bad, state, params)
    params = optax.apply_updates(params, updates)
    chex.assert_trees_all_equal(params, before_params)
    chex.assert_trees_all_equal(state.inner_state, before_state.inner_state)
  assert int(state.notfinite_count) == 3
  # Training continues afterwards.
  updates, state = opt.update(quadratic_grads(params, 1), state, params)
  chex.assert_tree_all_finite(updates)
  assert int(state.notfinite_count) == 0


@pytest.mark.parametrize('maximize', [False, True])
def test_descends_or_ascends(maximize):
  """The returned update descends a loss (or ascends with maximize)."""
  loss = lambda p: jnp.sum((p['w'] - 3.0) ** 2) + jnp.sum(p['b'] ** 2)
  opt = rmsprop_optax.rmsprop(5e-2, momentum=0.5, maximize=maximize)
  params, _ = run(opt, steps=50, grad_fn=lambda p, t: jax.grad(loss)(p))
  if maximize:
    assert float(loss(params)) > float(loss(PARAMS)) + 1.0
  else:
    assert float(loss(params)) < 0.2 * float(loss(PARAMS))


def test_jit_update_and_donated_state():
  opt = rmsprop_optax.rmsprop(1e-2, momentum=0.9, centered=True)
  params = jax.tree.map(jnp.copy, PARAMS)
  state = opt.init(params)

  @jax.jit
  def step(params, state, t):
    updates, state = opt.update(quadratic_grads(params, t), state, params)
    return optax.apply_updates(params, updates), state

  step_donated = jax.jit(step.__wrapped__, donate_argnums=(0, 1))
  p1, s1 = params, state
  p2, s2 = jax.tree.map(jnp.copy, params), jax.tree.map(jnp.copy, state)
  for t in range(5):
    p1, s1 = step(p1, s1, t)
    p2, s2 = step_donated(p2, s2, t)
  chex.assert_trees_all_equal(p1, p2)
  chex.assert_trees_all_equal(s1, s2)


def test_accepts_none_free_params_when_no_weight_decay():
  opt = rmsprop_optax.rmsprop(1e-2, momentum=0.9)
  state = opt.init(PARAMS)
  updates, _ = opt.update(PARAMS, state)  # params not needed
  chex.assert_trees_all_equal_shapes(updates, PARAMS)
