"""rmsprop_optax.schedules and the online convex counterexample (demos.online_convex).

Closed forms are evaluated in float64 NumPy. Tolerances: float64 schedules
within 1e-15 absolute of the closed form (values are in [0, 1] or equal the
learning rate, so this is a few ulps), float32 within 1e-6 relative; the
accumulator after T steps of ``power_decay(1.0)`` within 1e-13 relative of
the mean of the squared gradients in float64.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rmsprop_optax
from rmsprop_optax import schedules
from rmsprop_optax.demos import online_convex

# Counts in every regime: the first steps, around float32's integer limit
# (2**24) and the saturated int32 count.
STEPS = np.array([0, 1, 2, 3, 9, 99, 12345, 2**24 - 1, 2**24, 2**24 + 1, 2**31 - 1])


def _power_decay_reference(steps, exponent, scale):
  t = np.asarray(steps, dtype=np.float64) + 1
  return 1 - scale * t**-exponent


@pytest.mark.parametrize('exponent', [0.5, 0.8, 1.0])
@pytest.mark.parametrize('scale', [1.0, 0.5, 0.1])
def test_power_decay_float64_matches_closed_form(x64, exponent, scale):
  del x64
  decay = schedules.power_decay(exponent, scale)
  # The optimizer's count is int32: it must not be raised to a power as an int.
  got = decay(jnp.asarray(STEPS, dtype=jnp.int32))
  assert got.dtype == jnp.float64
  np.testing.assert_allclose(
    got, _power_decay_reference(STEPS, exponent, scale), rtol=0, atol=1e-15
  )
  for step in (0, 7, 2**31 - 1):  # Python ints and scalar counts too.
    ref = _power_decay_reference(step, exponent, scale)
    assert abs(float(decay(step)) - ref) <= 1e-15
    assert abs(float(decay(jnp.int32(step))) - ref) <= 1e-15


@pytest.mark.parametrize('exponent', [0.5, 0.8, 1.0])
@pytest.mark.parametrize('scale', [1.0, 0.1])
def test_power_decay_float32_matches_closed_form(exponent, scale):
  decay = schedules.power_decay(exponent, scale)
  got = decay(jnp.asarray(STEPS, dtype=jnp.int32))
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(got, _power_decay_reference(STEPS, exponent, scale), rtol=1e-6)
  assert np.all(np.asarray(got) < 1), 'the clip keeps the decay below 1'


def test_power_decay_starts_at_zero_and_stays_below_one():
  assert float(schedules.power_decay(0.8)(0)) == 0.0  # nu_1 = g_1**2
  assert float(schedules.power_decay(1.0, scale=0.25)(0)) == 0.75
  # float32: 1 - 1 / 2**31 rounds to 1; the clip gives the float just below 1.
  top = schedules.power_decay(1.0)(jnp.int32(2**31 - 1))
  assert top == np.nextafter(np.float32(1), np.float32(0))


def test_power_decay_under_jit_matches_eager():
  decay = schedules.power_decay(0.8)
  steps = jnp.arange(50, dtype=jnp.int32)
  np.testing.assert_array_equal(jax.jit(decay)(steps), decay(steps))


@pytest.mark.parametrize('exponent', [0.25, 0.5, 1.0])
def test_inverse_power_learning_rate_matches_closed_form(x64, exponent):
  del x64
  lr = schedules.inverse_power_learning_rate(0.3, exponent)
  got = lr(jnp.asarray(STEPS, dtype=jnp.int32))
  assert got.dtype == jnp.float64
  ref = 0.3 * (STEPS.astype(np.float64) + 1) ** -exponent
  np.testing.assert_allclose(got, ref, rtol=1e-15, atol=0)


def test_inverse_power_learning_rate_float32():
  lr = schedules.inverse_power_learning_rate(0.3, 0.5)
  got = lr(jnp.asarray(STEPS, dtype=jnp.int32))
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(got, 0.3 / np.sqrt(STEPS + 1.0), rtol=1e-6)


BAD_UNIT = [
  (0, 'must satisfy 0 < {name} <= 1, got 0'),
  (-0.5, 'must satisfy 0 < {name} <= 1, got -0.5'),
  (1.5, 'must satisfy 0 < {name} <= 1, got 1.5'),
  (math.nan, 'must be finite, got nan'),
  (math.inf, 'must be finite, got inf'),
  ('0.8', "must be a real number, got '0.8'"),
  (None, 'must be a real number, got None'),
  (True, 'must be a real number, got True'),
  (0.5j, 'must be a real number, got 0.5j'),
  (np.array([0.5, 0.8]), 'must be a real number, got array'),
]
BAD_IDS = [
  'zero',
  'negative',
  'above_one',
  'nan',
  'inf',
  'str',
  'none',
  'bool',
  'complex',
  'vector',
]


@pytest.mark.parametrize('name', ['exponent', 'scale'])
@pytest.mark.parametrize('value,message', BAD_UNIT, ids=BAD_IDS)
def test_power_decay_rejects_bad_arguments(name, value, message):
  with pytest.raises(ValueError) as info:
    schedules.power_decay(**{name: value})
  assert f'`{name}` ' + message.format(name=name) in str(info.value)


@pytest.mark.parametrize('value,message', BAD_UNIT, ids=BAD_IDS)
def test_inverse_power_learning_rate_rejects_bad_exponent(value, message):
  with pytest.raises(ValueError) as info:
    schedules.inverse_power_learning_rate(0.1, exponent=value)
  assert '`exponent` ' + message.format(name='exponent') in str(info.value)


@pytest.mark.parametrize('value', [0.0, -0.1, math.nan, math.inf, 'a'], ids=str)
def test_inverse_power_learning_rate_rejects_bad_rate(value):
  with pytest.raises(ValueError, match='`learning_rate`'):
    schedules.inverse_power_learning_rate(value)


def test_array_and_numpy_arguments_are_accepted():
  a = schedules.power_decay(np.float32(0.5), jnp.asarray(1.0))(3)
  b = schedules.power_decay(0.5, 1.0)(3)
  assert float(a) == float(b)


def _squared_gradient_mean_run(make_tx, steps, seed):
  grads = np.random.default_rng(seed).normal(size=(steps, 5))
  tx = make_tx()
  state = tx.init(jnp.zeros(5))
  update = jax.jit(tx.update)
  for g in grads:
    _, state = update(jnp.asarray(g), state)
  return rmsprop_optax.find_rms_state(state).nu, np.mean(grads**2, axis=0)


@pytest.mark.parametrize(
  'make_tx',
  [
    lambda: rmsprop_optax.scale_by_rms(decay=schedules.power_decay(1.0)),
    lambda: rmsprop_optax.rmsprop(0.01, decay=schedules.power_decay(1.0), momentum=0.9),
  ],
  ids=['scale_by_rms', 'rmsprop'],
)
def test_power_decay_one_makes_nu_the_mean_of_squared_gradients(x64, make_tx):
  del x64
  nu, mean = _squared_gradient_mean_run(make_tx, steps=200, seed=0)
  assert nu.dtype == jnp.float64
  np.testing.assert_allclose(nu, mean, rtol=1e-13)


def test_power_decay_in_float32_rmsprop_under_jit():
  nu, mean = _squared_gradient_mean_run(
    lambda: rmsprop_optax.rmsprop(0.01, decay=schedules.power_decay(1.0)), steps=100, seed=1
  )
  assert nu.dtype == jnp.float32
  np.testing.assert_allclose(nu, mean, rtol=1e-5)


def test_learning_rate_schedule_in_rmsprop(x64):
  del x64
  # One update of 1 - 1/t with nu_1 = g**2 is -lr_0 * g / |g| (eps = 0).
  tx = rmsprop_optax.rmsprop(
    schedules.inverse_power_learning_rate(0.5, 0.5), decay=schedules.power_decay(1.0), eps=0.0
  )
  state = tx.init(jnp.zeros(2))
  u, state = tx.update(jnp.array([3.0, -0.5]), state)
  np.testing.assert_allclose(u, [-0.5, 0.5], rtol=1e-15)
  u, state = tx.update(jnp.array([1.0, -0.5]), state)  # t = 2: lr 0.5 / sqrt(2), nu = mean
  np.testing.assert_allclose(
    u, [-0.5 / math.sqrt(2) / math.sqrt(5.0), 0.5 / math.sqrt(2)], rtol=1e-15
  )


@pytest.mark.parametrize(
  'build',
  [
    lambda d: rmsprop_optax.scale_by_rms(decay=d, bias_correction=True),
    lambda d: rmsprop_optax.scale_by_centered_rms(decay=d, bias_correction=True),
    lambda d: rmsprop_optax.rmsprop(0.1, decay=d, bias_correction=True),
  ],
  ids=['scale_by_rms', 'scale_by_centered_rms', 'rmsprop'],
)
def test_bias_correction_with_power_decay_is_a_clear_error(build):
  with pytest.raises(ValueError) as info:
    build(schedules.power_decay(0.8))
  message = str(info.value)
  assert 'bias_correction=True needs a fixed `decay`' in message, message
  assert 'got a schedule' in message, message


CONDITION_CASES = [
  # (r, s, scale, decay_non_decreasing, ratio_non_increasing, bound_vanishes)
  (1.0, 0.5, 1.0, True, True, True),  # AdamNC with alpha / sqrt(t)
  (0.8, 0.5, 1.0, True, True, True),  # Adafactor's decay
  (0.5, 0.25, 0.5, True, True, True),  # r = 2 s: chi_t constant
  (1.0, 0.25, 1.0, True, False, True),  # r > 2 s: chi_t grows
  (0.0, 0.5, 0.1, True, True, False),  # constant decay 0.9
  (0.5, 1.0, 1.0, True, True, False),  # s = 1
  (1.5, 0.75, 1.0, True, True, True),  # r > 1: not a power_decay, but the sequences qualify
  (-0.5, 0.5, 1.0, False, True, False),  # r < 0: the decay falls
  (1.0, 0.5, 1.5, False, True, True),  # scale > 1: the first decays are negative
]


@pytest.mark.parametrize('r,s,scale,mono,ratio,bound', CONDITION_CASES)
def test_zou_condition_cases(r, s, scale, mono, ratio, bound):
  got = schedules.zou_condition(r, s, scale)
  assert got == schedules.ZouCondition(mono, ratio, bound)
  assert got.holds == (mono and ratio and bound)


@pytest.mark.parametrize('r', [0.25, 0.5, 0.8, 1.0])
@pytest.mark.parametrize('s', [0.1, 0.25, 0.4, 0.5, 0.75])
def test_zou_ratio_matches_the_schedules_numerically(x64, r, s):
  del x64
  # chi_t = lr_t / sqrt(1 - decay_t), computed from the schedules themselves.
  steps = jnp.arange(2000)
  decay = schedules.power_decay(r, 0.5)(steps)
  chi = np.asarray(schedules.inverse_power_learning_rate(0.1, s)(steps) / jnp.sqrt(1 - decay))
  assert np.all(np.diff(decay) > 0)
  non_increasing = bool(np.all(np.diff(chi) <= 1e-12 * chi[1:]))
  assert non_increasing == schedules.zou_condition(r, s, 0.5).ratio_non_increasing


@pytest.mark.parametrize(
  'r,s', [(1.0, 0.5), (0.5, 0.5), (0.25, 0.5), (1.0, 0.75), (0.0, 0.5), (0.5, 1.0), (0.0, 0.25)]
)
def test_zou_bound_term_matches_the_sums_numerically(r, s):
  # Part 3 from the sums themselves: sum_{t<=T} lr_t sqrt(1 - decay_t) / (T lr_T), T = 1e3 vs 1e6.
  t = np.arange(1, 10**6 + 1, dtype=np.float64)
  lr, one_minus_decay = 0.1 * t**-s, 0.5 * t**-r
  term = np.cumsum(lr * np.sqrt(one_minus_decay)) / (t * lr)
  shrinks = term[10**6 - 1] < 0.5 * term[10**3 - 1]
  assert shrinks == schedules.zou_condition(r, s, 0.5).bound_vanishes, (r, s, term[[999, -1]])


def test_zou_condition_rejects_non_numbers():
  with pytest.raises(ValueError, match='`lr_exponent`'):
    schedules.zou_condition(1.0, math.nan)


# The counterexample. T = 3k + 1 ends on a C step.


def test_gradients_follow_the_three_step_pattern():
  g = np.asarray(online_convex.gradients(3.0, 7))
  np.testing.assert_array_equal(g, [3, -1, -1, 3, -1, -1, 3])


@pytest.mark.parametrize('x', [-1.0, -0.25, 0.5, 1.0])
def test_regret_of_a_fixed_point_is_the_closed_form(x64, x):
  del x64
  c, steps = 2.5, 300
  r = np.asarray(online_convex.regret(jnp.full(steps, x), c))
  t = np.arange(1, steps + 1)
  # C (x + 1) at t = 1 mod 3, -(x + 1) otherwise: (C - 2)(x + 1) per cycle.
  ones, others = (t + 2) // 3, t - (t + 2) // 3
  np.testing.assert_allclose(r, (c * ones - others) * (x + 1), rtol=1e-15, atol=1e-15)


def test_small_constant_decay_ends_at_the_worst_point(x64):
  del x64
  xs = online_convex.play(0.1, 2.5, steps=3001)
  assert float(xs[-1]) > 0.95
  r = online_convex.regret(xs[:-1], 2.5)
  # Linear regret: R_T / T flat, near 2 (C - 2) / 3.
  assert abs(online_convex.regret_slope(r)) < 0.05
  assert float(r[-1]) / 3001 == pytest.approx(2 * 0.5 / 3, rel=0.05)


@pytest.mark.parametrize('exponent', [1.0, 0.8])
def test_power_decay_reaches_the_best_point(x64, exponent):
  del x64
  xs = online_convex.play(schedules.power_decay(exponent), 2.5, steps=3001)
  assert float(xs[-1]) == -1.0
  assert online_convex.regret_slope(online_convex.regret(xs[:-1], 2.5)) < -0.4


def test_play_matches_a_numpy_loop(x64):
  del x64
  c, steps, lr, eps = 2.5, 60, 0.5, 1e-8
  got = np.asarray(online_convex.play(0.7, c, steps=steps, learning_rate=lr, eps=eps))
  x, nu, ref = 1.0, 0.0, [1.0]
  for t in range(1, steps + 1):
    g = c if t % 3 == 1 else -1.0
    nu = 0.7 * nu + 0.3 * g * g
    x = min(max(x - lr / math.sqrt(t) * g / math.sqrt(nu + eps), -1.0), 1.0)
    ref.append(x)
  np.testing.assert_allclose(got, ref, rtol=1e-14, atol=1e-15)


def test_cycle_drift_limits():
  assert online_convex.cycle_drift(0.0, 2.5) == pytest.approx(1.0)
  limit = (2 - 2.5) / math.sqrt((2.5**2 + 2) / 3)
  assert online_convex.cycle_drift(1 - 1e-9, 2.5) == pytest.approx(limit, rel=1e-6)


@pytest.mark.parametrize('c', [2.3, 3.0])
def test_critical_decay_separates_the_simulated_outcomes(x64, c):
  del x64
  critical = online_convex.critical_decay(c)
  grid = np.asarray(online_convex.final_x_grid([c], [critical - 0.1, critical + 0.1], steps=6001))
  assert grid[0, 0] > 0.9 and grid[0, 1] == -1.0, (critical, grid)


def test_critical_decay_needs_c_above_two():
  with pytest.raises(ValueError, match='`c` must be > 2'):
    online_convex.critical_decay(2.0)
