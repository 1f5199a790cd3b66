"""The sweep demo, learning-rate sensitivity: five optimizers x a log grid of lrs x seeds, one jit each.

Each optimizer's whole grid (learning rates x random seeds) on a model is one
call of :func:`rmsprop_optax.sweep.lr_sweep`: one compiled program, the runs
batched with ``jax.vmap``. Models: the digits CNN of
:mod:`rmsprop_optax.demos.digits` and the character LSTM of
:mod:`rmsprop_optax.demos.char_lstm` (its fast size, gradients clipped to
global norm 1 for every optimizer), both trained for fewer steps than in
their own demos so the full grid stays within minutes on a CPU.

Fast mode (what the tests run) keeps every optimizer on the digits CNN but
sweeps the LSTM with SGD and RMSprop only, on 4 learning rates x 2 seeds and
a few steps: on a CPU each sweep's time is mostly its one XLA compilation
(about 3 s, whatever the grid), so the number of sweeps sets the duration.

Optimizers (constant learning rate): SGD, SGD + momentum 0.9,
``rmsprop_optax.rmsprop`` (decay 0.9), the same with momentum 0.9, and
``optax.adam``. The sensitivity of an optimizer is the width, in decades, of
the learning-rate range whose seed-mean metric stays within 1% of its best
test accuracy (digits) or 5% of its best validation perplexity (LSTM); see
:func:`rmsprop_optax.sweep.tolerance_band`.

Timing: RMSprop on 4 learning rates x 1 seed, each model (fast mode: 2
learning rates, digits only), three ways in the
same process: the vmapped sweep (one jit), a Python loop calling one jitted
run per learning rate with the learning rate as an argument (compiled once),
and a loop where every run is its own jit (compiled per learning rate). Every
figure is wall time including compilation; ``run only`` excludes it.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import rmsprop_optax
from rmsprop_optax import sweep
from rmsprop_optax.demos import _common, char_lstm, digits

NAME = 'sweep'

# Base optimizers: learning_rate -> GradientTransformation.
OPTIMIZERS: dict[str, Callable[..., optax.GradientTransformation]] = {
  'sgd': optax.sgd,
  'sgd + momentum': functools.partial(optax.sgd, momentum=0.9),
  'rmsprop': functools.partial(rmsprop_optax.rmsprop, decay=0.9),
  'rmsprop + momentum': functools.partial(rmsprop_optax.rmsprop, decay=0.9, momentum=0.9),
  'adam': optax.adam,
}
DIGITS_TOLERANCE = 0.01  # accuracy >= 0.99 * best
LSTM_TOLERANCE = 0.05  # perplexity <= 1.05 * best
CLIP_NORM = char_lstm.CLIP_NORM

# 1e-5 ... 10**1.5, half a decade apart (14 points); 3 seeds.
GRID_FULL = tuple(float(10**e) for e in np.arange(-5.0, 1.51, 0.5))
GRID_FAST = (1e-3, 1e-2, 1e-1, 1.0)
SEEDS_FULL = 3
SEEDS_FAST = 2
DIGITS_EPOCHS = {'full': 10, 'fast': 1}
LSTM_STEPS = {'full': 300, 'fast': 20}
LSTM_SIZE = dict(hidden=64, embed=32, seq_len=32, batch=32)
TIMING_GRID = {'full': (1e-4, 1e-3, 1e-2, 1e-1), 'fast': (1e-3, 1e-2)}
# The optimizers swept on each model (fast mode: the LSTM with two, one compilation each).
SWEPT = {
  'full': {'digits': tuple(OPTIMIZERS), 'lstm': tuple(OPTIMIZERS)},
  'fast': {'digits': tuple(OPTIMIZERS), 'lstm': ('sgd', 'rmsprop')},
}
# The models timed (fast mode: digits only, to stay within CI's budget).
TIMED_MODELS = {'full': ('digits', 'lstm'), 'fast': ('digits',)}


def injected(name: str, *, clip: bool = False) -> Callable[..., optax.GradientTransformation]:
  """``optax.inject_hyperparams`` of optimizer ``name`` (after global-norm clipping if ``clip``)."""
  base = OPTIMIZERS[name]
  if not clip:
    return optax.inject_hyperparams(base)

  def clipped(learning_rate: Any) -> optax.GradientTransformation:
    return optax.chain(optax.clip_by_global_norm(CLIP_NORM), base(learning_rate=learning_rate))

  return optax.inject_hyperparams(clipped)


class Problem:
  """A model's ``loss_fn``, ``init_fn``, per-seed ``batches`` and ``eval_fn`` for ``lr_sweep``.

  Built once per configuration, so every sweep on it reuses the same function
  objects (the static arguments of the compiled program).
  """

  def __init__(
    self,
    loss_fn: Callable[..., Any],
    init_fn: Callable[..., Any],
    batches: Callable[..., Any],
    eval_fn: Callable[..., Any],
  ) -> None:
    self.loss_fn, self.init_fn, self.batches, self.eval_fn = loss_fn, init_fn, batches, eval_fn

  def run(self, optimizer: Callable[..., Any], lrs: Any, seeds: Any) -> sweep.SweepResult:
    result = sweep.lr_sweep(
      optimizer, self.loss_fn, self.init_fn, self.batches, lrs, seeds, eval_fn=self.eval_fn
    )
    return jax.block_until_ready(result)


@functools.cache
def digits_problem(epochs: int) -> Problem:
  """The digits CNN; each seed sets the initialisation and the batch order."""
  x_tr, y_tr, x_te, y_te = (jnp.asarray(a) for a in digits.load_data())
  model = digits.make_model()
  per_epoch = len(y_tr) // digits.BATCH_SIZE

  def init_fn(key: jax.Array) -> Any:
    return model.init(key, x_tr[:1])['params']

  def loss_fn(params: Any, idx: jax.Array) -> jax.Array:
    logits = model.apply({'params': params}, x_tr[idx])
    return optax.softmax_cross_entropy_with_integer_labels(logits, y_tr[idx]).mean()

  def batches(key: jax.Array) -> jax.Array:
    def epoch(k: jax.Array) -> jax.Array:
      perm = jax.random.permutation(k, len(y_tr))[: per_epoch * digits.BATCH_SIZE]
      return perm.reshape(per_epoch, digits.BATCH_SIZE)

    return jax.vmap(epoch)(jax.random.split(key, epochs)).reshape(-1, digits.BATCH_SIZE)

  def eval_fn(params: Any) -> dict[str, jax.Array]:
    logits = model.apply({'params': params}, x_te)
    return {'test_accuracy': jnp.mean(jnp.argmax(logits, -1) == y_te)}

  return Problem(loss_fn, init_fn, batches, eval_fn)


@functools.cache
def lstm_problem(steps: int) -> Problem:
  """The character LSTM (``LSTM_SIZE``); each seed sets the initialisation and the windows."""
  tokens = char_lstm.encode(char_lstm.corpus())
  split = int(len(tokens) * (1 - char_lstm.VAL_FRACTION))
  train, val = jnp.asarray(tokens[:split]), tokens[split:]
  window = LSTM_SIZE['seq_len'] + 1
  val_windows = jnp.asarray(val[: (len(val) // window) * window].reshape(-1, window))
  vocab = len(char_lstm.VOCAB)

  def init_fn(key: jax.Array) -> Any:
    return char_lstm.init_params(key, vocab, LSTM_SIZE['hidden'], LSTM_SIZE['embed'])

  def loss_fn(params: Any, starts: jax.Array) -> jax.Array:
    return char_lstm.loss_fn(params, train[starts[:, None] + jnp.arange(window)])

  def batches(key: jax.Array) -> jax.Array:
    return jax.random.randint(key, (steps, LSTM_SIZE['batch']), 0, len(train) - window)

  def eval_fn(params: Any) -> dict[str, jax.Array]:
    return {'val_perplexity': jnp.exp(char_lstm.loss_fn(params, val_windows))}

  return Problem(loss_fn, init_fn, batches, eval_fn)


def summarize(lrs: np.ndarray, per_run: np.ndarray, tolerance: float, higher: bool) -> dict:
  """Seed mean, spread and the tolerance band of one optimizer's ``(K, S)`` metric."""
  # A diverged run (NaN) counts as failed for the mean: NaN propagates.
  mean = per_run.mean(axis=1)
  band = sweep.tolerance_band(lrs, mean, tolerance=tolerance, higher_is_better=higher)
  return {
    'mean': [float(v) for v in mean],
    'min': [float(v) for v in per_run.min(axis=1)],
    'max': [float(v) for v in per_run.max(axis=1)],
    'band': band._asdict(),
  }


def time_sweep(
  problem: Problem,
  make: Callable[[], Callable[..., Any]],
  seed: int,
  lrs: tuple[float, ...] = TIMING_GRID['full'],
) -> dict:
  """Wall times (s) of RMSprop on ``lrs`` x 1 seed: vmapped vs a loop of runs.

  ``vmap``: one ``lr_sweep`` call over all of ``lrs`` (compile + run), then the
  same call again (``vmap_run``: run only). ``loop_same_jit``: one call per
  learning rate with one fixed optimizer factory, so the program compiled by
  the first call is reused by the others (``loop_run``: those later calls,
  per run). ``loop_own_jit``: the first of those calls plus one call per
  remaining learning rate with a fresh factory object, which compiles anew.
  ``make()`` returns a new optimizer factory object at each call.
  """
  factory = make()
  seeds = [seed]

  def timed(factory: Callable[..., Any], grid: Any) -> float:
    start = time.perf_counter()
    problem.run(factory, grid, seeds)
    return time.perf_counter() - start

  vmap_total = timed(factory, lrs)
  vmap_run = timed(factory, lrs)
  loop_factory = make()
  first = timed(loop_factory, lrs[:1])
  later = [timed(loop_factory, [lr]) for lr in lrs[1:]]
  fresh = [timed(make(), [lr]) for lr in lrs[1:]]
  loop_same = first + sum(later)
  loop_own = first + sum(fresh)
  loop_run = float(np.mean(later))
  return {
    'runs': len(lrs),
    'vmap_s': vmap_total,
    'vmap_run_s': vmap_run,
    'loop_same_jit_s': loop_same,
    'loop_own_jit_s': loop_own,
    'loop_run_s': loop_run * len(lrs),
    'speedup_vs_same_jit': loop_same / vmap_total,
    'speedup_vs_own_jit': loop_own / vmap_total,
    'speedup_run_only': loop_run * len(lrs) / vmap_run,
  }


def run(
  *, fast: bool = False, seed: int = 0, progress: bool = False, num_seeds: int | None = None
) -> dict[str, Any]:
  """Sweeps the optimizers of ``SWEPT``; reports widths, best learning rates and timings.

  Full mode sweeps every optimizer on both models; fast mode, every optimizer
  on digits and only SGD and RMSprop on the LSTM. The seeds are ``seed, seed +
  1, ...``: ``num_seeds`` of them, by default ``SEEDS_FULL`` (``SEEDS_FAST`` in
  fast mode).
  """
  mode = 'fast' if fast else 'full'
  lrs = np.asarray(GRID_FAST if fast else GRID_FULL)
  seeds = _common.seed_range(seed, num_seeds, SEEDS_FAST if fast else SEEDS_FULL)
  problems = {
    'digits': (digits_problem(DIGITS_EPOCHS[mode]), False, 'test_accuracy', DIGITS_TOLERANCE, True),
    'lstm': (lstm_problem(LSTM_STEPS[mode]), True, 'val_perplexity', LSTM_TOLERANCE, False),
  }
  summaries: dict[str, dict[str, Any]] = {'digits': {}, 'lstm': {}}
  seconds: dict[str, float] = {}
  jobs = [(model, name) for model in problems for name in SWEPT[mode][model]]
  with _common.progress_bar(
    len(jobs) + 2, f'{NAME} ({len(lrs)} lrs x {len(seeds)} seeds)', progress
  ) as advance:
    for model, name in jobs:
      problem, clip, metric, tolerance, higher = problems[model]
      start = time.perf_counter()
      result = problem.run(injected(name, clip=clip), lrs, seeds)
      seconds[f'{model}/{name}'] = time.perf_counter() - start
      per_run = np.asarray(result.metrics[metric], np.float64)
      summaries[model][name] = summarize(lrs, per_run, tolerance, higher)
      advance(1)
    timing = {}
    for model in TIMED_MODELS[mode]:
      problem, clip = problems[model][:2]
      make = functools.partial(injected, 'rmsprop', clip=clip)
      timing[model] = time_sweep(problem, make, seed, TIMING_GRID[mode])
      advance(1)

  metrics: dict[str, dict[str, float]] = {}
  for name in OPTIMIZERS:
    d = summaries['digits'][name]['band']
    lstm = summaries['lstm'].get(name, {}).get('band')  # fast mode: not every optimizer
    metrics[name] = {'digits_decades_within_1pct': d['decades']}
    if lstm is not None:
      metrics[name]['lstm_decades_within_5pct'] = lstm['decades']
    metrics[name]['digits_best_lr'] = d['best_lr']
    if lstm is not None:
      metrics[name]['lstm_best_lr'] = lstm['best_lr']
    metrics[name]['digits_best_accuracy'] = d['best_value']
    if lstm is not None:
      metrics[name]['lstm_best_perplexity'] = lstm['best_value']
  for model in timing:
    metrics['rmsprop'][f'{model}_speedup_vs_same_jit'] = timing[model]['speedup_vs_same_jit']
    metrics['rmsprop'][f'{model}_speedup_vs_own_jit'] = timing[model]['speedup_vs_own_jit']
  return {
    'name': NAME,
    'metrics': metrics,
    # Seed-mean digits test accuracy per learning rate: the table's optimizers.
    'curves': {name: summaries['digits'][name]['mean'] for name in OPTIMIZERS},
    'curve_label': 'test accuracy (seed mean)',
    'curve_x': [float(v) for v in lrs],
    'curve_xlabel': 'learning rate',
    'learning_rates': [float(v) for v in lrs],
    'seeds': seeds,
    'sweeps': summaries,
    'timing': timing,
    'seconds': seconds,
    'config': {
      'digits_epochs': DIGITS_EPOCHS[mode],
      'lstm_steps': LSTM_STEPS[mode],
      'lstm_size': dict(LSTM_SIZE),
      'timing_grid': list(TIMING_GRID[mode]),
      'swept': {model: list(names) for model, names in SWEPT[mode].items()},
    },
  }


def figure(result: dict[str, Any]) -> Any:
  """Final metric against learning rate: one line per optimizer, seed min-max as a band."""
  import matplotlib.pyplot as plt

  from rmsprop_optax.demos import plotting

  colors = {'sgd + momentum': plotting.COLORS['momentum']}
  fig, axes = plt.subplots(1, 2, figsize=(12.0, 4.8), layout='constrained')
  lrs = np.asarray(result['learning_rates'])
  panels = [
    ('digits', 'test accuracy (digits CNN)', '1%'),
    ('lstm', 'validation perplexity (char LSTM, log)', '5%'),
  ]
  for ax, (model, ylabel, tol) in zip(axes, panels, strict=True):
    for name, s in result['sweeps'][model].items():
      color = plotting.color_for(name) or colors.get(name)
      band = s['band']
      ax.plot(
        lrs,
        s['mean'],
        marker='o',
        ms=3,
        color=color,
        lw=1.6,
        label=f'{name}: {band["decades"]:.2f} decades within {tol}',
      )
      ax.fill_between(lrs, s['min'], s['max'], color=color, alpha=0.15, lw=0)
    ax.set_xscale('log')
    ax.set_xlabel('learning rate (constant)')
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize='small', framealpha=0.9)
  axes[0].set_ylim(0.0, 1.0)
  axes[1].set_yscale('log')
  best = min(s['band']['best_value'] for s in result['sweeps']['lstm'].values())
  axes[1].set_ylim(best * 0.9, 100.0)
  plotting.plain_log_ticks(axes[1], best * 0.9, 100.0)
  n_seeds = len(result['seeds'])
  fig.suptitle(
    f'final metric vs learning rate: mean of {n_seeds} seeds (band: min to max); '
    f"each optimizer's grid is one jit",
    fontsize='medium',
  )
  return fig
