"""Tests for the toy demos: test functions, trajectory runner, plotting, demo modules.

References are float64 NumPy written from the equations (closed-form
gradients, gradient descent, AdaGrad's sum, RMSprop via ``_harness.RmspropReference``).
"""

from __future__ import annotations

import json
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _harness import RmspropReference, need
from _harness import trajectory as reference_trajectory

import rmsprop_optax
from rmsprop_optax.demos import adagrad_vs_rmsprop, functions, quadratic, rosenbrock, trajectory

# float32 arithmetic against float64 references.
F32_RTOL = 1e-5
F32_ATOL = 1e-6
# Over hundreds of float32 steps rounding accumulates (and the losses span decades).
LONG_RTOL = 1e-4
# float64 runs against float64 references.
F64_RTOL = 1e-10

POINTS = np.array([[5.0, -2.0], [0.3, 0.7], [-1.5, 2.0], [1.0, 1.0]])


def _quadratic_np(p):
  return p[..., 0] ** 2 + 100 * p[..., 1] ** 2


def _rosenbrock_np(p):
  x, y = p[..., 0], p[..., 1]
  return (1 - x) ** 2 + 100 * (y - x**2) ** 2


def _rosenbrock_grad_np(p):
  x, y = p
  return np.array([-2 * (1 - x) - 400 * x * (y - x**2), 200 * (y - x**2)])


# -- functions ---------------------------------------------------------------


def test_functions_values_and_gradients(x64):
  del x64
  for p in POINTS:
    pj = jnp.asarray(p)
    np.testing.assert_allclose(functions.quadratic(pj), _quadratic_np(p), rtol=F64_RTOL)
    np.testing.assert_allclose(functions.rosenbrock(pj), _rosenbrock_np(p), rtol=F64_RTOL)
    np.testing.assert_allclose(
      functions.gradient(functions.quadratic)(pj), [2 * p[0], 200 * p[1]], rtol=F64_RTOL
    )
    np.testing.assert_allclose(
      functions.gradient(functions.rosenbrock)(pj), _rosenbrock_grad_np(p), rtol=F64_RTOL
    )
  # Batched evaluation (for grids) and the minima.
  np.testing.assert_allclose(functions.rosenbrock(jnp.asarray(POINTS)), _rosenbrock_np(POINTS))
  for problem in (functions.QUADRATIC, functions.ROSENBROCK):
    assert float(problem.fn(jnp.asarray(problem.minimum))) == 0.0


def test_grid_shapes_and_values():
  x, y, z = functions.grid(functions.quadratic, (-1.0, 1.0), (-2.0, 2.0), num=7)
  assert x.shape == y.shape == z.shape == (7, 7)
  np.testing.assert_allclose(z, x**2 + 100 * y**2, rtol=F32_RTOL)


# -- trajectory --------------------------------------------------------------


def test_run_trajectory_sgd_matches_gradient_descent():
  steps, lr = 60, 0.004
  tr = trajectory.run_trajectory(optax.sgd(lr), functions.quadratic, (5.0, -2.0), steps)
  assert tr.path.shape == (steps + 1, 2) and tr.losses.shape == (steps + 1,)
  # Reference: x_t = x_0 (1 - 2 lr)^t, y_t = y_0 (1 - 200 lr)^t.
  t = np.arange(steps + 1)
  expected = np.stack([5.0 * (1 - 2 * lr) ** t, -2.0 * (1 - 200 * lr) ** t], axis=1)
  np.testing.assert_allclose(tr.path, expected, rtol=F32_RTOL, atol=F32_ATOL)
  np.testing.assert_allclose(tr.losses, _quadratic_np(expected), rtol=F32_RTOL, atol=F32_ATOL)


def test_run_trajectory_rmsprop_matches_reference(x64):
  del x64
  # Rounding differences (1e-16) grow ~1000x every 5 steps after step 40 here
  # (the run crosses the valley, where g changes sign): compare the first 40.
  steps = 40
  opt = rmsprop_optax.rmsprop(0.01, decay=0.9, eps=1e-8)
  tr = trajectory.run_trajectory(opt, functions.rosenbrock, (-1.5, 2.0), steps, dtype=jnp.float64)
  ref = RmspropReference(learning_rate=0.01, decay=0.9, eps=1e-8)
  start = {'p': np.array([-1.5, 2.0])}
  path = reference_trajectory(ref, start, lambda p, t: {'p': _rosenbrock_grad_np(p['p'])}, steps)
  expected = [start['p']] + [p['p'] for p in path]
  np.testing.assert_allclose(tr.path, np.array(expected), rtol=F64_RTOL, atol=F64_RTOL)


def test_run_trajectory_tree_params():
  loss = lambda p: jnp.sum(p['a'] ** 2) + jnp.sum(p['b'] ** 2)
  start = {'a': jnp.ones(3), 'b': jnp.full((2, 2), -1.0)}
  tr = trajectory.run_trajectory(optax.sgd(0.1), loss, start, 5)
  assert tr.path['a'].shape == (6, 3) and tr.path['b'].shape == (6, 2, 2)
  # Reference: p_t = p_0 (1 - 2 lr)^t.
  np.testing.assert_allclose(tr.path['a'][-1], 0.8**5 * np.ones(3), rtol=F32_RTOL)
  np.testing.assert_allclose(tr.losses[-1], 7 * 0.8**10, rtol=F32_RTOL)


def test_make_runner_vmaps_over_a_loss_argument():
  """Scaling the loss by c scales SGD's step by c: the runner sweeps c in one call."""
  lr, steps = 0.001, 10
  runner = trajectory.make_runner(optax.sgd(lr), lambda p, c: c * functions.quadratic(p), steps)
  cs = jnp.array([0.5, 1.0, 2.0])
  paths, losses = jax.jit(jax.vmap(runner, in_axes=(None, 0)))(jnp.array([5.0, -2.0]), cs)
  assert paths.shape == (3, steps + 1, 2) and losses.shape == (3, steps + 1)
  for i, c in enumerate([0.5, 1.0, 2.0]):
    expected_x = 5.0 * (1 - 2 * lr * c) ** steps
    np.testing.assert_allclose(paths[i, -1, 0], expected_x, rtol=F32_RTOL)


def test_feed_gradients_classic_worked_example():
  """The classic worked example: lr 0.01, decay 0.9, eps 1e-8, gradients 1, 0.1, 0.01."""
  g = np.array([1.0, 0.1, 0.01])
  run = trajectory.feed_gradients(
    rmsprop_optax.rmsprop(0.01, decay=0.9, eps=1e-8), jnp.asarray(g, jnp.float32), jnp.zeros(())
  )
  # Reference, the float64 equations: v = 0.1, 0.091, 0.08191.
  ref = RmspropReference(learning_rate=0.01, decay=0.9, eps=1e-8)
  params, v, theta = {'theta': np.zeros(())}, [], []
  for t, g_t in enumerate(g):
    params = ref.step(params, {'theta': np.asarray(g_t)}, t)
    v.append(float(ref.nu['theta']))
    theta.append(float(params['theta']))
  np.testing.assert_allclose(v, [0.1, 0.091, 0.08191], rtol=1e-12)
  np.testing.assert_allclose(theta, [-0.0316228, -0.0349377, -0.0352871], atol=5e-8)
  np.testing.assert_allclose(rmsprop_optax.find_rms_state(run.states).nu, v, rtol=F32_RTOL)
  np.testing.assert_allclose(np.cumsum(run.updates), theta, rtol=F32_RTOL)
  chex.assert_shape(run.updates, (3,))


# -- plotting ----------------------------------------------------------------


@pytest.fixture
def plt():
  matplotlib = need('matplotlib')
  matplotlib.use('Agg')
  import matplotlib.pyplot as pyplot

  yield pyplot
  pyplot.close('all')


def test_plot_trajectories_draws_paths_over_contours(plt, tmp_path):
  from rmsprop_optax.demos import plotting

  paths = {name: tr.path for name, tr in quadratic.trajectories(20).items()}
  ax = plotting.plot_trajectories(functions.QUADRATIC, paths)
  labels = [line.get_label() for line in ax.get_lines()]
  assert labels[:2] == ['sgd', 'rmsprop']
  assert len(ax.get_lines()) == 4  # two paths, the start and the minimum
  np.testing.assert_array_equal(ax.get_lines()[0].get_xydata(), paths['sgd'])
  assert ax.collections, 'no contour lines'
  assert [t.get_text() for t in ax.get_legend().get_texts()] == ['sgd', 'rmsprop']
  out = plotting.save(ax, tmp_path / 'paths.png')
  assert (tmp_path / 'paths.png').stat().st_size > 1000, out


def test_plot_curves_log_axis_and_styles(plt, tmp_path):
  from rmsprop_optax.demos import plotting

  fig, axes = plt.subplots(1, 2)
  curves = {'adagrad': [1.0, 0.1, 0.01], 'rmsprop': [1.0, 0.5, 0.25]}
  ax = plotting.plot_curves(
    curves, ax=axes[1], ylabel='step', styles={'rmsprop': {'linestyle': '--'}}
  )
  assert ax is axes[1]
  assert ax.get_yscale() == 'log' and ax.get_ylabel() == 'step'
  lines = ax.get_lines()
  assert [line.get_label() for line in lines] == ['adagrad', 'rmsprop']
  assert lines[1].get_linestyle() == '--'
  np.testing.assert_array_equal(lines[0].get_ydata(), curves['adagrad'])
  plotting.save(fig, tmp_path / 'curves.png')
  assert (tmp_path / 'curves.png').stat().st_size > 1000


def test_demos_import_without_matplotlib():
  """matplotlib is imported only when a plot is drawn."""
  code = (
    'import sys\n'
    'import rmsprop_optax.demos.plotting, rmsprop_optax.demos.quadratic\n'
    'import rmsprop_optax.demos.rosenbrock, rmsprop_optax.demos.adagrad_vs_rmsprop\n'
    "assert 'matplotlib' not in sys.modules, 'matplotlib imported eagerly'\n"
  )
  subprocess.run([sys.executable, '-c', code], check=True, timeout=120)


# -- demo modules --------------------------------------------------------------


def _check_contract(result, name, optimizers):
  assert set(result) >= {'name', 'metrics', 'curves', 'curve_label'}
  assert result['name'] == name
  assert list(result['metrics']) == list(optimizers)
  assert list(result['curves']) == list(optimizers)
  assert isinstance(result['curve_label'], str)
  for curve in result['curves'].values():
    assert all(isinstance(v, float) and np.isfinite(v) for v in curve)
  json.dumps(result)  # Plain Python numbers only.


def test_quadratic_sgd_flips_while_rmsprop_converges():
  result = quadratic.run(fast=True)
  _check_contract(result, 'quadratic', ['sgd', 'rmsprop'])
  runs = quadratic.trajectories(quadratic.FAST_STEPS)
  # SGD: y_{t+1} = y_t - 0.01 * 200 y_t = -y_t, so y_t = -2 (-1)^t (float32 rounding
  # of 0.01 * 200 drifts by ~1e-7 per step).
  t = np.arange(quadratic.FAST_STEPS + 1)
  np.testing.assert_allclose(runs['sgd'].path[:, 1], -2.0 * (-1.0) ** t, rtol=LONG_RTOL)
  np.testing.assert_allclose(runs['sgd'].path[:, 0], 5.0 * 0.98**t, rtol=LONG_RTOL, atol=1e-7)
  assert result['metrics']['sgd']['final_loss'] >= 399.0
  # RMSprop gets y under control and is close to the minimum.
  assert result['metrics']['rmsprop']['max_abs_y_last_10'] < 0.05
  assert result['metrics']['rmsprop']['final_loss'] < 1.0
  full = quadratic.trajectories(quadratic.NUM_STEPS)['rmsprop']
  # With a constant lr it rattles at about lr / 2 in each coordinate.
  assert np.abs(full.path[-20:]).max() < 0.01
  assert full.losses[-1] < 1e-2


def test_rosenbrock_run_fast():
  result = rosenbrock.run(fast=True)
  names = ['sgd', 'momentum', 'rmsprop', 'rmsprop + momentum', 'adam']
  _check_contract(result, 'rosenbrock', names)
  start_loss = float(functions.rosenbrock(jnp.asarray(functions.ROSENBROCK.start)))
  for name in names:
    assert result['curves'][name][0] == pytest.approx(start_loss)
    assert result['metrics'][name]['final_loss'] < start_loss
  # RMSprop + momentum settles in the valley's end within the fast budget.
  assert 0 < result['metrics']['rmsprop + momentum']['steps_to_1e-3'] < rosenbrock.FAST_STEPS
  assert result['metrics']['rmsprop + momentum']['final_distance'] < 0.05


def _adagrad_reference(g, lr, initial=0.1, eps=1e-7):
  """optax.adagrad per its docs: s_t = s_{t-1} + g^2; update = -lr g / sqrt(s_t + eps)."""
  s = initial + np.cumsum(g.astype(np.float64) ** 2)
  return s, lr / np.sqrt(s + eps)


def _rmsprop_reference(g, lr, decay, eps=1e-8):
  """nu after each step (the reference's state) and the effective rate lr / sqrt(nu + eps)."""
  ref = RmspropReference(learning_rate=lr, decay=decay, eps=eps)
  zero = {'x': np.zeros(())}
  ref.init(zero)
  nu = np.zeros(len(g))
  for i, g_i in enumerate(g.astype(np.float64)):
    ref.update({'x': np.asarray(g_i)}, zero)
    nu[i] = ref.nu['x']
  return nu, lr / np.sqrt(nu + eps)


def test_adagrad_vs_rmsprop_against_reference():
  result = adagrad_vs_rmsprop.run(fast=True)
  names = ['adagrad'] + [f'rmsprop (decay {d})' for d in adagrad_vs_rmsprop.DECAYS]
  _check_contract(result, 'adagrad_vs_rmsprop', names)
  g = adagrad_vs_rmsprop.gradient_sequence()
  lr = adagrad_vs_rmsprop.LEARNING_RATE
  series = adagrad_vs_rmsprop.analyse()
  refs = {'adagrad': _adagrad_reference(g, lr)}
  for d in adagrad_vs_rmsprop.DECAYS:
    refs[f'rmsprop (decay {d})'] = _rmsprop_reference(g, lr, d)
  for name, (acc, eff) in refs.items():
    np.testing.assert_allclose(series[name].accumulator, acc, rtol=LONG_RTOL, err_msg=name)
    np.testing.assert_allclose(series[name].effective_lr, eff, rtol=LONG_RTOL, err_msg=name)
    np.testing.assert_allclose(result['curves'][name], eff / lr, rtol=LONG_RTOL, err_msg=name)
  m = result['metrics']
  # AdaGrad's step after the g = 100 phase stays collapsed (~ lr / 1000) ...
  assert m['adagrad']['eff_lr_end_phase2'] < 2e-3
  # ... while RMSprop at decay 0.9 has forgotten it (~ 0.89 lr); 0.99 only partly.
  assert m['rmsprop (decay 0.9)']['eff_lr_end_phase2'] > 0.8
  assert 0.01 < m['rmsprop (decay 0.99)']['eff_lr_end_phase2'] < 0.1
  # During the g = 100 phase every method steps ~ lr / 100 per unit gradient or less.
  assert m['rmsprop (decay 0.9)']['eff_lr_end_phase1'] == pytest.approx(0.01, rel=1e-3)
