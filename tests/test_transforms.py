"""Tier 1: ``scale_by_rms`` and ``scale_by_centered_rms``.

References: ``_harness.rms_outputs`` (the float64 NumPy reference of
``rmsprop`` run as the tier-1 transforms) and closed forms, among them the
classic worked example (lr 0.01, decay 0.9, eps 1e-8, gradients 1, 0.1, 0.01).
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _harness import rms_outputs, scan_updates

import rmsprop_optax
from rmsprop_optax import ScaleByCenteredRmsState, ScaleByRmsState

# Six float32 steps against the float64 reference: a few ulps per step, and
# the decay 0.8 / eps 1e-2 cases below are well conditioned.
RTOL_F32 = 1e-5
# For outputs that are (close to) 0: the zero first gradient of those cases.
ATOL_F32 = 1e-6
INT32_MAX = np.iinfo(np.int32).max

TRANSFORMS = {
  'rms': rmsprop_optax.scale_by_rms,
  'centered': rmsprop_optax.scale_by_centered_rms,
}


class TransformTest(chex.TestCase):
  """The core transforms with and without jit (chex.variants)."""

  @chex.variants(with_jit=True, without_jit=True)
  def test_matches_numpy_every_flag(self):
    rng = np.random.default_rng(0)
    grads = [rng.normal(0.2, 1.0, size=(4, 3)).astype(np.float32) for _ in range(6)]
    # Centered + bias correction estimates the variance at t = 1 as exactly 0
    # (a rounding residue in float32): a zero first gradient keeps that step
    # exactly 0, and eps 1e-2 keeps the early two-sample variances well
    # conditioned, so float32 can be compared with float64 at all.
    grads[0][:] = 0.0
    for name, factory in TRANSFORMS.items():
      for eps_in_sqrt in (True, False):
        for bias_correction in (False, True):
          for initial_scale in (0.0, 1.0):
            tx = factory(
              0.8,
              1e-2,
              eps_in_sqrt=eps_in_sqrt,
              bias_correction=bias_correction,
              initial_scale=initial_scale,
            )
            state = tx.init(jnp.zeros((4, 3)))
            update = self.variant(tx.update)
            expected = rms_outputs(
              grads,
              0.8,
              1e-2,
              centered=name == 'centered',
              eps_in_sqrt=eps_in_sqrt,
              initial_scale=initial_scale,
              bias_correction=bias_correction,
            )
            for g, want in zip(grads, expected):
              out, state = update(jnp.asarray(g), state)
              np.testing.assert_allclose(out, want, rtol=RTOL_F32, atol=ATOL_F32)
            assert int(state.count) == len(grads)

  @chex.variants(with_jit=True, without_jit=True)
  def test_classic_worked_example(self):
    """theta_0 = 0, lr 0.01, rho 0.9, eps 1e-8, gradients 1, 0.1, 0.01, by hand.

    v = 0.1, 0.091, 0.08191 and theta = -0.0316228, -0.0349377, -0.0352871.
    Write-ups of this example that print v_3 = 0.0829, theta_2 = -0.0348 and
    theta_3 = -0.0359 contain arithmetic slips.
    """
    tx = rmsprop_optax.scale_by_rms(decay=0.9, eps=1e-8)
    update = self.variant(tx.update)
    theta = 0.0
    state = tx.init(jnp.zeros(()))
    want_v = [0.1, 0.091, 0.08191]
    want_theta = [-0.0316228, -0.0349377, -0.0352871]
    for g, v, th in zip([1.0, 0.1, 0.01], want_v, want_theta):
      out, state = update(jnp.asarray(g, jnp.float32), state)
      theta -= 0.01 * float(out)
      np.testing.assert_allclose(float(state.nu), v, rtol=1e-6)
      np.testing.assert_allclose(theta, th, atol=5e-8)
    # Those misprinted values are wrong, not just rounded.
    assert abs(float(state.nu) - 0.0829) > 5e-4
    assert abs(theta - (-0.0359)) > 5e-4

  @chex.variants(with_jit=True, without_jit=True)
  def test_eps_zero_with_zero_gradients_is_zero_not_nan(self):
    for factory in TRANSFORMS.values():
      for eps_in_sqrt in (True, False):
        tx = factory(0.9, 0.0, eps_in_sqrt=eps_in_sqrt)
        state = tx.init(jnp.zeros(3))
        g = jnp.array([0.0, 2.0, 0.0])
        out, state = self.variant(tx.update)(g, state)
        chex.assert_tree_all_finite(out)
        assert float(out[0]) == 0.0 and float(out[2]) == 0.0
        # A nonzero gradient with eps = 0 is g / sqrt(0.1 g^2) = sign(g) sqrt(10);
        # centered: 0.1 g^2 - (0.1 g)^2 = 0.09 g^2.
        want = np.sqrt(10) if factory is rmsprop_optax.scale_by_rms else 1 / np.sqrt(0.09)
        np.testing.assert_allclose(float(out[1]), want, rtol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  def test_injected_array_eps_zero_also_guarded(self):
    tx = optax.inject_hyperparams(rmsprop_optax.scale_by_rms)(decay=0.9, eps=0.0)
    state = tx.init(jnp.zeros(2))
    out, _ = self.variant(tx.update)(jnp.zeros(2), state)
    chex.assert_trees_all_equal(out, jnp.zeros(2))

  @chex.variants(with_jit=True, without_jit=True)
  def test_centered_variance_clamped_at_zero(self):
    """A constant gradient with bias correction has variance exactly 0.

    In float32, nu_hat - mu_hat**2 then rounds to tiny negative values for
    some magnitudes; unclamped, sqrt(negative + 1e-12) would be NaN.
    """
    tx = rmsprop_optax.scale_by_centered_rms(0.9, 1e-12, bias_correction=True)
    state = tx.init(jnp.zeros(64))
    g = jnp.asarray(np.linspace(0.1, 1000.0, 64), jnp.float32)
    update = self.variant(tx.update)
    saw_negative = False
    for t in range(1, 31):
      out, state = update(g, state)
      chex.assert_tree_all_finite(out)
      assert np.all(np.asarray(out) > 0)
      c = np.float32(1 - 0.9**t)
      nu_hat = np.asarray(state.nu) / c
      mu_hat = np.asarray(state.mu) / c
      saw_negative |= bool(np.any(nu_hat - mu_hat * mu_hat < 0))
    assert saw_negative, 'the test no longer exercises the clamp'

  @chex.variants(with_jit=True, without_jit=True)
  def test_complex_params_use_abs_squared(self):
    rng = np.random.default_rng(1)
    grads = [(rng.normal(size=3) + 1j * rng.normal(size=3)).astype(np.complex64) for _ in range(4)]
    for name, factory in TRANSFORMS.items():
      tx = factory(0.9, 1e-8)
      state = tx.init(jnp.zeros(3, jnp.complex64))
      assert state.nu.dtype == jnp.float32  # a second moment is real
      if name == 'centered':
        assert state.mu.dtype == jnp.complex64
      want = rms_outputs(grads, 0.9, 1e-8, centered=name == 'centered')
      for g, w in zip(grads, want):
        out, state = self.variant(tx.update)(jnp.asarray(g), state)
        assert out.dtype == jnp.complex64
        np.testing.assert_allclose(out, w, rtol=1e-5)


@pytest.mark.parametrize('name', TRANSFORMS)
@pytest.mark.parametrize(
  'dtype, state_dtype',
  [
    (jnp.bfloat16, jnp.float32),
    (jnp.float16, jnp.float32),
    (jnp.float32, jnp.float32),
    (jnp.float64, jnp.float64),
    (jnp.complex64, jnp.float32),
  ],
  ids=['bf16', 'f16', 'f32', 'f64', 'c64'],
)
def test_dtype_stability(name, dtype, state_dtype, x64):
  """Output has the gradient's dtype; state dtypes never drift over steps."""
  tx = TRANSFORMS[name](0.9, 1e-8, bias_correction=True)
  params = {'a': jnp.ones((2, 3), dtype), 'b': jnp.ones(4, dtype)}
  state = tx.init(params)
  assert state.count.dtype == jnp.int32 and state.count.shape == ()
  chex.assert_trees_all_equal_dtypes(
    state.nu, jax.tree.map(lambda p: jnp.zeros((), state_dtype), params)
  )
  dtypes0 = jax.tree.map(lambda x: x.dtype, state)
  update = jax.jit(tx.update)
  for i in range(5):
    g = jax.tree.map(lambda p, i=i: (p * (0.5 + i)).astype(dtype), params)
    out, state = update(g, state)
    chex.assert_trees_all_equal_dtypes(out, g)
    chex.assert_tree_all_finite(out)
    assert jax.tree.map(lambda x: x.dtype, state) == dtypes0


@pytest.mark.parametrize('name', TRANSFORMS)
def test_explicit_accumulator_dtype(name, x64):
  tx = TRANSFORMS[name](0.9, 1e-8, accumulator_dtype=jnp.float64)
  state = tx.init(jnp.ones(3, jnp.bfloat16))
  assert state.nu.dtype == jnp.float64
  out, state = tx.update(jnp.ones(3, jnp.bfloat16), state)
  assert out.dtype == jnp.bfloat16 and state.nu.dtype == jnp.float64
  tx = TRANSFORMS[name](0.9, 1e-8, accumulator_dtype=jnp.bfloat16)
  state = tx.init(jnp.ones(3, jnp.float32))
  out, state = tx.update(jnp.ones(3, jnp.float32), state)
  assert state.nu.dtype == jnp.bfloat16 and out.dtype == jnp.float32


@pytest.mark.parametrize('dtype', [jnp.float16, jnp.bfloat16])
def test_rmsprop_computes_16bit_updates_in_float32_and_rounds_once(dtype):
  """g / sqrt(eps) = 1e5 overflows float16 (max 65504) before lr = 1e-3 scales it.

  rmsprop runs 16-bit gradients through the chain in float32 and rounds the
  final update: -1e-3 * 1e5 = -100, exactly representable.
  """
  opt = rmsprop_optax.rmsprop(1e-3, eps=1e-10, centered=True, bias_correction=True, momentum=0.5)
  params = jnp.zeros(4, dtype)
  updates, state = jax.jit(opt.update)(jnp.ones(4, dtype), opt.init(params), params)
  assert updates.dtype == dtype
  np.testing.assert_array_equal(np.asarray(updates, np.float32), np.full(4, -100.0, np.float32))
  assert rmsprop_optax.find_rms_state(state).nu.dtype == jnp.float32


def test_bf16_state_would_stall_float32_state_does_not():
  """Why float32 state for 16-bit params.

  With nu near 1 and decay 0.999, the increment (1 - decay) * (g^2 - nu) is
  below half a bf16 ulp at 1 (2**-8), so a bf16 accumulator never moves
  (bf16 accumulators in Optax: https://github.com/google-deepmind/optax/issues/1552).
  """
  g = jnp.full(4, 2.0, jnp.bfloat16)  # g^2 = 4: nu should climb from 1 towards 4
  results = {}
  for acc in (None, jnp.bfloat16):
    tx = rmsprop_optax.scale_by_rms(0.999, 1e-8, initial_scale=1.0, accumulator_dtype=acc)
    state = tx.init(jnp.zeros(4, jnp.bfloat16))
    for _ in range(100):
      _, state = tx.update(g, state)
    results[acc] = float(state.nu[0])
  want = 4 - 3 * 0.999**100  # float64 closed form: 1.285...
  np.testing.assert_allclose(results[None], want, rtol=1e-5)
  assert results[jnp.bfloat16] == 1.0


@pytest.mark.parametrize('name', TRANSFORMS)
def test_count_saturates_and_bias_correction_stays_finite(name):
  tx = TRANSFORMS[name](0.9, 1e-8, bias_correction=True)
  state = tx.init(jnp.zeros(3))._replace(count=jnp.asarray(INT32_MAX - 2, jnp.int32))
  update = jax.jit(tx.update)
  for _ in range(5):
    out, state = update(jnp.ones(3), state)
    chex.assert_tree_all_finite(out)
  assert int(state.count) == INT32_MAX
  assert state.count.dtype == jnp.int32


def test_no_retrace_on_second_call():
  tx = rmsprop_optax.scale_by_centered_rms(0.9, 1e-8, bias_correction=True)

  @jax.jit
  @chex.assert_max_traces(n=1)
  def step(g, state):
    return tx.update(g, state)

  state = tx.init(jnp.zeros(5))
  for i in range(4):
    _, state = step(jnp.full(5, float(i)), state)


@pytest.mark.parametrize('name', TRANSFORMS)
def test_state_is_a_scan_carry(name):
  tx = TRANSFORMS[name](0.9, 1e-8, bias_correction=True)
  grads = jnp.asarray(np.random.default_rng(2).normal(size=(30, 4)), jnp.float32)

  outs, states = scan_updates(tx, grads)
  state = jax.tree.map(lambda x: x[-1], states)
  # Same as a Python loop.
  loop_state = tx.init(jnp.zeros(4))
  for t in range(30):
    out, loop_state = tx.update(grads[t], loop_state)
    np.testing.assert_allclose(outs[t], out, rtol=1e-6)
  chex.assert_trees_all_close(state, loop_state, rtol=1e-6)
  assert isinstance(state, (ScaleByRmsState, ScaleByCenteredRmsState))


@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16, jnp.float64])
@pytest.mark.parametrize('mean_decay', [None, 0.5])
def test_centered_bias_corrected_first_step_is_exactly_g_over_sqrt_eps(dtype, mean_decay, x64):
  """At t = 1 the variance estimate is exactly 0, so the step is g / sqrt(eps).

  With zero initial moments, nu_hat = g^2 and mu_hat = g at t = 1. Computed as
  nu_hat - mu_hat^2 the variance would be rounding noise (~1e-7 g^2 in
  float32), 9x off at eps = 1e-8; with eps = 0 the step must be 0, not 1e7.
  """
  g = jnp.asarray(np.linspace(-3.0, 5.0, 33), dtype)
  for eps in (1e-8, 0.0):
    tx = rmsprop_optax.scale_by_centered_rms(0.9, eps, mean_decay=mean_decay, bias_correction=True)
    out, state = jax.jit(tx.update)(g, tx.init(jnp.zeros_like(g)))
    want = np.asarray(g, np.float64) / np.sqrt(eps) if eps else np.zeros(33)
    np.testing.assert_allclose(
      np.asarray(out, np.float64), want, rtol=1e-2 if dtype == jnp.bfloat16 else 1e-6
    )
    # From t = 2 on, the variance estimate is the data's.
    out2, _ = jax.jit(tx.update)(-g, state)
    chex.assert_tree_all_finite(out2)
  # With a nonzero initial second moment the t = 1 variance is not zero.
  tx = rmsprop_optax.scale_by_centered_rms(0.9, 1e-8, bias_correction=True, initial_scale=1.0)
  out, _ = tx.update(jnp.ones(3, dtype), tx.init(jnp.zeros(3, dtype)))
  assert np.all(np.abs(np.asarray(out, np.float64)) < 10)


def test_bias_correction_accurate_near_decay_one():
  """1 - decay**t cancels near decay = 1: 1 - 1e-9 rounds to 1.0 in float32."""
  for decay in (0.999, 1 - 1e-6, 1 - 1e-9):
    tx = rmsprop_optax.scale_by_rms(decay, 0.0, bias_correction=True)
    state = tx.init(jnp.zeros(4))
    g = jnp.asarray([1.0, -2.0, 0.5, 3.0])
    for _ in range(3):
      out, state = tx.update(g, state)
    # A constant gradient with bias correction: nu_hat = g^2 exactly, out = sign(g).
    np.testing.assert_allclose(out, np.sign(g), rtol=1e-5)


def test_mean_decay_and_decay_schedule():
  """mean_decay separate from decay; a schedule decay read at the pre-increment count."""
  rng = np.random.default_rng(3)
  grads = [rng.normal(size=3) for _ in range(5)]
  sched = lambda c: 0.5 + 0.1 * c
  tx = rmsprop_optax.scale_by_centered_rms(sched, 1e-6, mean_decay=0.3)
  state = tx.init(jnp.zeros(3))
  want = rms_outputs(grads, sched, 1e-6, centered=True, mean_decay=0.3)
  for g, w in zip(grads, want):
    out, state = tx.update(jnp.asarray(g, jnp.float32), state)
    np.testing.assert_allclose(out, w, rtol=1e-5)


def test_initial_scale_and_eps_placement_closed_form():
  """TF1 (nu_0 = 1, eps inside) vs PyTorch (nu_0 = 0, eps outside) on one step."""
  g = 3.0
  tf = rmsprop_optax.scale_by_rms(0.9, 0.5, initial_scale=1.0)
  out, _ = tf.update(jnp.asarray(g), tf.init(jnp.zeros(())))
  np.testing.assert_allclose(float(out), g / np.sqrt(0.9 + 0.1 * g**2 + 0.5), rtol=1e-6)
  pt = rmsprop_optax.scale_by_rms(0.9, 0.5, eps_in_sqrt=False)
  out, _ = pt.update(jnp.asarray(g), pt.init(jnp.zeros(())))
  np.testing.assert_allclose(float(out), g / (np.sqrt(0.1 * g**2) + 0.5), rtol=1e-6)
