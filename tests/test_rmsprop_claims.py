"""The textbook claims about RMSprop, checked on this library, and the diagnostics.

The claims are those of the method's introduction (Hinton's Coursera lecture
6e; Tieleman & Hinton 2012) and its usual analyses: the memory length
1 / (1 - decay), nu's convergence under a constant gradient, the bias of an
average started at zero and its correction (Kingma & Ba 2015, Adam, section 3),
centering (Graves 2013, arXiv:1308.0850, eq. 38-41), scale invariance, and
RMSprop against AdaGrad (Duchi et al. 2011) when the gradient scale changes.
Each test states the claim and its closed form; the closed forms are evaluated
in float64 NumPy, the state ones by ``_harness.RmspropReference``.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _harness import RmspropReference, scan_updates

import rmsprop_optax


def run_transform(tx, grads, params=None):
  """Outputs and states for a sequence of gradients (jitted scan); params default to zeros."""
  return scan_updates(tx, grads, jnp.zeros_like(grads[0]) if params is None else params)


@pytest.mark.parametrize('decay', [0.9, 0.99, 0.999])
def test_constant_gradient_nu_converges_to_g_squared(decay, x64):
  """nu_t = g^2 (1 - decay^t) exactly: converges to g^2 at the rate decay sets."""
  g = 3.0
  steps = 3000
  _, states = run_transform(rmsprop_optax.scale_by_rms(decay), jnp.full((steps, 1), g))
  t = np.arange(1, steps + 1)
  np.testing.assert_allclose(np.asarray(states.nu)[:, 0], g**2 * (1 - decay**t), rtol=1e-10)
  assert abs(float(states.nu[-1, 0]) - g**2) < g**2 * decay**steps * 1.01 + 1e-12


@pytest.mark.parametrize('decay', [0.9, 0.99])
def test_memory_length(decay, x64):
  """A single impulse is remembered for about 1 / (1 - decay) steps.

  After M = memory_length(decay) steps, an impulse's weight in nu has fallen by
  decay^M ~ 1/e, and the last M gradients carry 1 - decay^M ~ 63% of the weight.
  """
  m = rmsprop_optax.memory_length(decay)
  assert m == pytest.approx(1 / (1 - decay))
  steps = int(5 * m)
  impulse = np.zeros((steps, 1))
  impulse[0] = 1.0
  _, states = run_transform(rmsprop_optax.scale_by_rms(decay), jnp.asarray(impulse))
  nu = np.asarray(states.nu)[:, 0]
  np.testing.assert_allclose(nu[int(m)] / nu[0], decay ** int(m), rtol=1e-9)
  assert abs(nu[int(m)] / nu[0] - np.exp(-1)) < 0.02
  # Sum of the EMA weights over the last M steps.
  np.testing.assert_allclose(1 - decay ** int(m), 1 - np.exp(-1), atol=0.02)


def test_memory_length_edges():
  assert rmsprop_optax.memory_length(0.0) == 1.0
  assert rmsprop_optax.memory_length(1.0) == float('inf')
  np.testing.assert_allclose(rmsprop_optax.memory_length(jnp.asarray(0.5)), 2.0)
  with pytest.raises(ValueError, match='decay'):
    rmsprop_optax.memory_length(1.5)


def test_bias_corrected_nu_is_unbiased_on_stationary_noise(x64):
  """E[nu_t] = E[g^2] (1 - decay^t); the corrected nu_hat has mean E[g^2] at every t."""
  decay, sigma2, trials, steps = 0.9, 4.0, 200_000, 20
  rng = np.random.default_rng(0)
  grads = jnp.asarray(rng.normal(0.0, np.sqrt(sigma2), size=(steps, trials)))
  _, states = run_transform(rmsprop_optax.scale_by_rms(decay), grads)
  t = np.arange(1, steps + 1)
  mean_nu = np.asarray(states.nu).mean(axis=1)
  # Standard error of a mean of g^2 over 200k trials is ~0.3% of sigma^2.
  np.testing.assert_allclose(mean_nu, sigma2 * (1 - decay**t), rtol=0.015)
  np.testing.assert_allclose(mean_nu / (1 - decay**t), sigma2, rtol=0.015)
  # Uncorrected, the early estimate is badly biased (t = 1: 10% of sigma^2).
  assert mean_nu[0] < 0.12 * sigma2


def test_bias_corrected_transform_output_is_unit_scale_from_step_one(x64):
  """With correction the first step is g / |g| (in size), without it sqrt(10) larger."""
  g = jnp.asarray([[2.0, -0.5]])
  out_bc, _ = run_transform(rmsprop_optax.scale_by_rms(0.9, 0.0, bias_correction=True), g)
  out_raw, _ = run_transform(rmsprop_optax.scale_by_rms(0.9, 0.0), g)
  np.testing.assert_allclose(out_bc[0], [1.0, -1.0], rtol=1e-12)
  np.testing.assert_allclose(out_raw[0], [np.sqrt(10), -np.sqrt(10)], rtol=1e-12)


def test_centered_removes_a_constant_gradient_mean(x64):
  """g = m + noise: plain RMS divides by sqrt(m^2 + s^2), centered by s."""
  m, s, steps = 10.0, 1.0, 2000
  rng = np.random.default_rng(1)
  grads = jnp.asarray(m + s * rng.normal(size=(steps, 256)))
  _, plain = run_transform(rmsprop_optax.scale_by_rms(0.99), grads)
  _, centered = run_transform(rmsprop_optax.scale_by_centered_rms(0.99), grads)
  plain_scale = np.asarray(plain.nu)[-500:].mean()
  centered_scale = (np.asarray(centered.nu) - np.asarray(centered.mu) ** 2)[-500:].mean()
  np.testing.assert_allclose(plain_scale, m**2 + s**2, rtol=0.02)
  # The EMA variance with decay 0.99 is biased by a factor ~(1 - (1-d)/(1+d)).
  np.testing.assert_allclose(centered_scale, s**2, rtol=0.05)
  np.testing.assert_allclose(np.asarray(centered.mu)[-500:].mean(), m, rtol=0.01)


@pytest.mark.parametrize('c', [1e-6, 1e-3, 1.0, 1e3, 1e6])
def test_scale_invariance_when_eps_is_negligible(c, x64):
  """Multiplying the loss by c > 0 leaves g / sqrt(nu) unchanged."""
  rng = np.random.default_rng(2)
  grads = jnp.asarray(rng.normal(size=(50, 8)))
  for factory in (rmsprop_optax.scale_by_rms, rmsprop_optax.scale_by_centered_rms):
    base, _ = run_transform(factory(0.9, 1e-300), grads)
    scaled, _ = run_transform(factory(0.9, 1e-300), c * grads)
    np.testing.assert_allclose(scaled, base, rtol=1e-10)


def test_eps_breaks_scale_invariance_when_not_negligible(x64):
  """With eps = 1e-2, a loss scaled by 1e-3 (|g| ~ 1e-3) gets much smaller steps."""
  rng = np.random.default_rng(3)
  grads = jnp.asarray(rng.normal(size=(50, 8)))
  for eps_in_sqrt in (True, False):
    tx = rmsprop_optax.scale_by_rms(0.9, 1e-2, eps_in_sqrt=eps_in_sqrt)
    base, _ = run_transform(tx, grads)
    small, _ = run_transform(tx, 1e-3 * grads)
    ratio = np.abs(np.asarray(small)).mean() / np.abs(np.asarray(base)).mean()
    assert ratio < 0.2
    # Large gradients: eps negligible again, the steps are eps = 0's.
    big, _ = run_transform(tx, 1e3 * grads)
    no_eps, _ = run_transform(rmsprop_optax.scale_by_rms(0.9, 0.0), grads)
    np.testing.assert_allclose(big, no_eps, rtol=0.02)


def test_adagrad_collapses_rmsprop_recovers(x64):
  """100 steps of g = 100, then 100 of g = 1: the gradient scale changes mid-run.

  AdaGrad's accumulator is a sum: after the switch its step is about
  lr / sqrt(100 * 100^2) = lr / 1000 and stays there. RMSprop's average forgets
  the first phase in a few memory lengths, and its step returns to about lr.
  """
  lr = 0.01
  g = jnp.concatenate([jnp.full((100, 1), 100.0), jnp.full((100, 1), 1.0)])
  rms_out, _ = run_transform(rmsprop_optax.rmsprop(lr, decay=0.9), g)
  ada_out, _ = run_transform(optax.adagrad(lr, initial_accumulator_value=0.0, eps=1e-8), g)
  rms_step = np.abs(np.asarray(rms_out))[:, 0]
  ada_step = np.abs(np.asarray(ada_out))[:, 0]
  # Same step size during the first phase (both normalise g = 100 to ~lr).
  np.testing.assert_allclose(rms_step[99], lr, rtol=1e-3)
  # Closed forms at the end of the second phase.
  np.testing.assert_allclose(ada_step[-1], lr / np.sqrt(100 * 100.0**2 + 100 * 1.0), rtol=1e-3)
  nu_end = 100.0**2 * (1 - 0.9**100) * 0.9**100 + (1 - 0.9**100)
  np.testing.assert_allclose(rms_step[-1], lr / np.sqrt(nu_end + 1e-8), rtol=1e-9)
  # 100 steps is 10 memory lengths: 0.9^100 * 100^2 = 0.27 of the first phase
  # is left in nu, so the step is back to 89% of lr (and to lr as t grows).
  assert rms_step[-1] > 0.85 * lr
  assert ada_step[-1] < lr / 900


def test_find_rms_state_through_wrappers():
  params = {'w': jnp.ones(3)}
  inner = rmsprop_optax.rmsprop(1e-2, momentum=0.9, centered=True)
  wrapped = [
    inner,
    optax.chain(optax.clip(1.0), inner),
    optax.MultiSteps(inner, 2),
    optax.apply_if_finite(inner, 3),
    optax.masked(inner, {'w': True}),
    optax.inject_hyperparams(rmsprop_optax.rmsprop)(learning_rate=0.1),
    optax.multi_transform({'a': inner, 'b': optax.sgd(0.1)}, {'w': 'a'}),
  ]
  for opt in wrapped:
    state = opt.init(params)
    found = rmsprop_optax.find_rms_state(state)
    assert isinstance(found, (rmsprop_optax.ScaleByRmsState, rmsprop_optax.ScaleByCenteredRmsState))
  with pytest.raises(ValueError, match='no ScaleByRmsState'):
    rmsprop_optax.find_rms_state(optax.adam(1e-3).init(params))


@pytest.mark.parametrize('eps_in_sqrt', [True, False])
@pytest.mark.parametrize('centered', [False, True])
def test_effective_learning_rate(eps_in_sqrt, centered, x64):
  lr, eps = 0.01, 1e-4
  opt = rmsprop_optax.rmsprop(lr, eps=eps, eps_in_sqrt=eps_in_sqrt, centered=centered)
  params = {'w': jnp.zeros(3)}
  state = opt.init(params)
  rng = np.random.default_rng(4)
  grads = [rng.normal(size=3) for _ in range(5)]
  for g in grads:
    updates, state = opt.update({'w': jnp.asarray(g)}, state, params)
  eff = rmsprop_optax.effective_learning_rate(state, lr, eps=eps, eps_in_sqrt=eps_in_sqrt)
  # The last update is exactly -eff * g.
  np.testing.assert_allclose(updates['w'], -np.asarray(eff['w']) * grads[-1], rtol=1e-12)
  # And from the reference's moments (decay 0.9, rmsprop's default).
  ref = RmspropReference(lr, eps=eps, eps_in_sqrt=eps_in_sqrt, centered=centered)
  zero = {'w': np.zeros(3)}
  ref.init(zero)
  for g in grads:
    ref.update({'w': g}, zero)
  nu, mu = ref.nu['w'], ref.mu['w']
  s = np.maximum(nu - mu**2, 0) if centered else nu
  want = lr / (np.sqrt(s + eps) if eps_in_sqrt else np.sqrt(s) + eps)
  np.testing.assert_allclose(eff['w'], want, rtol=1e-12)
  # A schedule is read at the state's count.
  eff_sched = rmsprop_optax.effective_learning_rate(
    state, lambda c: lr * c, eps=eps, eps_in_sqrt=eps_in_sqrt
  )
  chex.assert_trees_all_close(eff_sched, jax.tree.map(lambda e: 5 * e, eff), rtol=1e-12)
