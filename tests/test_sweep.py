"""``rmsprop_optax.sweep``: the vmapped sweep equals separate runs, compiles once; the band.

The separate runs are plain Python loops of a jitted step with the optimizer
built directly (no ``inject_hyperparams``), so the comparison also checks that
the injected, batched learning rate is the same optimizer. They agree to
float32 rounding, not bit for bit: XLA may pick another kernel or reduction
order for a batched operation than for the unbatched one, and each step's
rounding differences carry into the next steps (the gap grows with the steps
and the learning rate). On the small problem below (20 steps) the largest
measured relative gap is 9e-7 (about 8 float32 ulps), hence rtol 1e-6, with
an atol for values that pass near zero.

The demo (``python -m rmsprop_optax demo sweep``) runs once in fast mode
(every optimizer on the digits CNN, SGD and RMSprop on the LSTM).
"""

from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _harness import need

import rmsprop_optax
from rmsprop_optax.sweep import lr_sweep, tolerance_band

RTOL = 1e-6  # float32: batched vs unbatched kernels round differently (see above).
ATOL = 1e-7
STEPS = 20  # long enough for the runs to separate by learning rate, short enough that rounding stays small
LRS = (1e-3, 3e-3, 1e-2, 3e-2)
SEEDS = (0, 5, 7)

_X = jax.random.normal(jax.random.key(42), (STEPS, 16, 3))
_Y = _X @ jnp.array([1.0, -2.0, 0.5]) + 0.3


def _init(key):
  k1, k2 = jax.random.split(key)
  return {'w': jax.random.normal(k1, (3,)), 'b': jax.random.normal(k2, ())}


def _loss(params, batch):
  x, y = batch
  return jnp.mean((x @ params['w'] + params['b'] - y) ** 2)


def _eval(params):
  return {'w': params['w'], 'loss': _loss(params, (_X[0], _Y[0]))}


def _seed_batches(key):
  """Per-seed batches: the data in a seed-dependent order of steps."""
  order = jax.random.permutation(key, STEPS)
  return _X[order], _Y[order]


_FACTORY = optax.inject_hyperparams(rmsprop_optax.rmsprop)


def _separate_run(lr, seed, batches_fn=None):
  """One run by hand: the optimizer built with a Python-float learning rate, a jitted step."""
  init_key, data_key = jax.random.split(jax.random.key(seed))
  params = _init(init_key)
  xs, ys = (_X, _Y) if batches_fn is None else batches_fn(data_key)
  opt = rmsprop_optax.rmsprop(lr, decay=0.9, momentum=0.5)
  state = opt.init(params)

  @jax.jit
  def step(params, state, batch):
    loss, grads = jax.value_and_grad(_loss)(params, batch)
    updates, state = opt.update(grads, state, params)
    return optax.apply_updates(params, updates), state, loss

  losses = []
  for t in range(STEPS):
    params, state, loss = step(params, state, (xs[t], ys[t]))
    losses.append(loss)
  return np.asarray(losses), {k: np.asarray(v) for k, v in _eval(params).items()}


def _factory(learning_rate):
  return _FACTORY(learning_rate=learning_rate, decay=0.9, momentum=0.5)


@pytest.mark.parametrize('per_seed_batches', [False, True], ids=['shared', 'per_seed'])
def test_vmapped_sweep_equals_separate_runs(per_seed_batches):
  batches = _seed_batches if per_seed_batches else (_X, _Y)
  result = lr_sweep(_factory, _loss, _init, batches, LRS, SEEDS, eval_fn=_eval)
  for i, lr in enumerate(LRS):
    for j, seed in enumerate(SEEDS):
      losses, final = _separate_run(lr, seed, _seed_batches if per_seed_batches else None)
      where = f'lr {lr}, seed {seed}'
      np.testing.assert_allclose(result.losses[i, j], losses, rtol=RTOL, atol=ATOL, err_msg=where)
      for name, value in final.items():
        np.testing.assert_allclose(result.metrics[name][i, j], value, rtol=RTOL, atol=ATOL)
  # The runs differ: the comparison is not trivially between equal curves.
  assert float(jnp.ptp(result.losses[:, 0, -1])) > 1.0


def test_compiles_once_for_the_whole_grid():
  # One trace of the loss for 4 x 3 runs, and none for a new grid of the same shape.
  loss = chex.assert_max_traces(_loss, n=1)
  lr_sweep(_factory, loss, _init, (_X, _Y), LRS, SEEDS)
  lr_sweep(_factory, loss, _init, (_X, _Y), [2e-3, 4e-3, 6e-3, 8e-3], (1, 2, 3))
  # A loop of separate jitted runs traces the loss once per run instead.
  counted = {'n': 0}

  def counting_loss(params, batch):
    counted['n'] += 1
    return _loss(params, batch)

  for lr in LRS[:2]:
    lr_sweep(lambda learning_rate, lr=lr: _factory(lr), counting_loss, _init, (_X, _Y), [lr], [0])
  assert counted['n'] == 2


def test_output_shapes():
  result = lr_sweep(_factory, _loss, _init, (_X, _Y), LRS, SEEDS[:2], eval_fn=_eval)
  k, s = len(LRS), 2
  assert result.learning_rates.shape == (k,) and result.learning_rates.dtype == jnp.float32
  assert result.seeds.shape == (s,) and result.seeds.dtype == jnp.int32
  assert result.losses.shape == (k, s, STEPS)
  assert result.metrics['loss'].shape == (k, s)
  assert result.metrics['w'].shape == (k, s, 3)
  assert lr_sweep(_factory, _loss, _init, (_X, _Y), LRS, [0]).metrics == {}


def test_rejects_an_empty_or_nested_grid():
  with pytest.raises(ValueError, match='non-empty 1-D'):
    lr_sweep(_factory, _loss, _init, (_X, _Y), [], [0])
  with pytest.raises(ValueError, match='non-empty 1-D'):
    lr_sweep(_factory, _loss, _init, (_X, _Y), [[1e-3]], [0])


# --- tolerance_band -------------------------------------------------------------------------------


def test_band_higher_is_better_interpolates_in_log_lr():
  band = tolerance_band([1e-3, 1e-2, 1e-1, 1.0], [0.5, 0.9, 1.0, 0.8], tolerance=0.1,
                        higher_is_better=True)  # fmt: skip
  assert band.best_lr == 0.1 and band.best_value == 1.0
  assert band.low == pytest.approx(1e-2)  # 0.9 sits exactly on the threshold
  assert math.log10(band.high) == pytest.approx(-0.5)  # halfway from 1.0 down to 0.8
  assert band.decades == pytest.approx(1.5) and not band.at_edge


def test_band_lower_is_better_nan_and_edges():
  lrs = [1e-4, 1e-3, 1e-2, 1e-1]
  # Perplexity: best 10 at 1e-3; 10.4 qualifies at 5%; a diverged run (NaN) ends the band.
  band = tolerance_band(lrs, [10.4, 10.0, 30.0, np.nan], tolerance=0.05, higher_is_better=False)
  assert band.best_lr == 1e-3 and band.low == 1e-4 and band.at_edge
  assert 1e-3 < band.high < 1e-2
  only = tolerance_band(lrs, [20.0, 10.0, np.nan, np.nan], tolerance=0.05, higher_is_better=False)
  assert only.decades == pytest.approx(math.log10(only.high / only.low)) and only.decades < 1
  nothing = tolerance_band(lrs, [np.nan] * 4, tolerance=0.05, higher_is_better=False)
  assert math.isnan(nothing.best_lr) and nothing.decades == 0.0
  with pytest.raises(ValueError, match='ascending'):
    tolerance_band([1e-2, 1e-3], [1.0, 2.0], tolerance=0.1, higher_is_better=True)


# --- the demo -------------------------------------------------------------------------------------


def test_demo_fast(tmp_path):
  need('flax')
  need('sklearn')
  from rmsprop_optax.demos import cli, lr_sensitivity, plotting

  assert cli.DEMOS['sweep'] == lr_sensitivity.__name__ and 'sweep' in cli.NOT_IN_ALL
  result = lr_sensitivity.run(fast=True, seed=0)
  assert result['name'] == 'sweep'
  names = list(lr_sensitivity.OPTIMIZERS)
  assert list(result['curves']) == names
  n_lrs = len(lr_sensitivity.GRID_FAST)
  swept = lr_sensitivity.SWEPT['fast']
  assert swept['digits'] == tuple(names) and {'sgd', 'rmsprop'} <= set(swept['lstm'])
  for model in ('digits', 'lstm'):
    assert list(result['sweeps'][model]) == list(swept[model])
    for name in swept[model]:
      summary = result['sweeps'][model][name]
      assert len(summary['mean']) == n_lrs
      assert summary['band']['decades'] >= 0.0
  for name, metrics in result['metrics'].items():
    assert all(isinstance(v, float) for v in metrics.values()), name
    assert metrics['digits_best_lr'] in lr_sensitivity.GRID_FAST
    assert ('lstm_best_lr' in metrics) == (name in swept['lstm']), name
  # The full mode sweeps every optimizer on both models, >= 12 learning rates x 3 seeds.
  assert lr_sensitivity.SWEPT['full'] == {'digits': tuple(names), 'lstm': tuple(names)}
  assert len(lr_sensitivity.GRID_FULL) >= 12 and lr_sensitivity.SEEDS_FULL >= 3
  # Learning happened even in a few steps: above chance (0.10), below uniform (97).
  assert result['metrics']['rmsprop']['digits_best_accuracy'] > 0.5
  assert result['metrics']['rmsprop']['lstm_best_perplexity'] < 60.0
  timing = result['timing']['digits']
  assert timing['vmap_s'] > 0 and timing['loop_same_jit_s'] > 0
  assert timing['loop_own_jit_s'] > timing['loop_same_jit_s']  # a compilation per run
  assert '| sweep' in cli.format_results([result])
  # The demo's own figure (found by the result's name): accuracy and perplexity panels.
  import matplotlib.pyplot as plt

  fig = plotting.demo_figure(result)
  assert len(fig.axes) == 2
  assert len(fig.axes[1].get_lines()) == len(swept['lstm'])
  plt.close(fig)
  plotting.plot_result(result, tmp_path / 'sweep.png')
  assert (tmp_path / 'sweep.png').stat().st_size > 10_000


def test_demo_refuses_no_seeds():
  from rmsprop_optax.demos import lr_sensitivity

  with pytest.raises(ValueError, match='num_seeds must be at least 1, got 0'):
    lr_sensitivity.run(fast=True, num_seeds=0)
