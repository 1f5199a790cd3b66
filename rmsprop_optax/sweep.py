"""Learning-rate sweeps: K learning rates x S random seeds trained in one compiled program.

:func:`lr_sweep` builds one training run (init, ``lax.scan`` over the steps,
evaluation) and ``jax.vmap``\\ s it over the learning rates and the seeds, all
inside one ``jax.jit``: one trace and one compilation for the whole grid, and
every step of every run is one batched XLA computation. With an
``optax.inject_hyperparams`` factory the learning rate is a leaf of the
optimizer state, so the state is simply batched over the grid like the params.

:func:`tolerance_band` reads a sweep: the range of learning rates whose metric
stays within a tolerance of the best, and its width in decades.

>>> import jax, jax.numpy as jnp, optax, rmsprop_optax
>>> x = jnp.linspace(-1.0, 1.0, 8)
>>> result = lr_sweep(
...   optax.inject_hyperparams(rmsprop_optax.rmsprop),
...   loss_fn=lambda p, batch: jnp.mean((p['w'] * batch - 2.0 * batch) ** 2),
...   init_fn=lambda key: {'w': jax.random.normal(key)},
...   batches=jnp.stack([x] * 50),  # 50 steps, the same batch each time
...   learning_rates=[1e-3, 1e-2, 1e-1],
...   seeds=[0, 1],
...   eval_fn=lambda p: {'w': p['w']},
... )
>>> result.losses.shape, result.metrics['w'].shape  # (lr, seed, step), (lr, seed)
((3, 2, 50), (3, 2))
>>> [round(float(w), 1) for w in result.metrics['w'][2]]  # lr 0.1 reached w = 2
[2.0, 2.0]
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

__all__ = ('Band', 'SweepResult', 'lr_sweep', 'tolerance_band')


class SweepResult(NamedTuple):
  """What :func:`lr_sweep` returns; axis 0 is the learning rate, axis 1 the seed.

  Attributes:
    learning_rates: ``(K,)`` the grid, float32.
    seeds: ``(S,)`` the random seeds, int32.
    losses: ``(K, S, T)`` the training loss at every step (before its update).
    metrics: ``{name: (K, S, ...)}``, ``eval_fn`` of the final params (empty without one).
  """

  learning_rates: jax.Array
  seeds: jax.Array
  losses: jax.Array
  metrics: dict[str, jax.Array]


class _Problem(NamedTuple):
  """The callables of a sweep: one static (hashed) argument of the compiled program."""

  optimizer: Callable[..., optax.GradientTransformation]
  loss_fn: Callable[[optax.Params, chex.ArrayTree], jax.Array]
  init_fn: Callable[[jax.Array], optax.Params]
  eval_fn: Callable[[optax.Params], Mapping[str, jax.Array]] | None
  batches_fn: Callable[[jax.Array], chex.ArrayTree] | None


def _one_run(
  learning_rate: jax.Array, seed: jax.Array, batches: chex.ArrayTree | None, problem: _Problem
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """One training run: ``init_fn``, ``lax.scan`` of the steps, ``eval_fn``."""
  init_key, data_key = jax.random.split(jax.random.key(seed))
  params = problem.init_fn(init_key)
  if problem.batches_fn is not None:
    batches = problem.batches_fn(data_key)
  opt = problem.optimizer(learning_rate=learning_rate)
  opt_state = opt.init(params)

  def step(
    carry: tuple[optax.Params, optax.OptState], batch: chex.ArrayTree
  ) -> tuple[tuple[optax.Params, optax.OptState], jax.Array]:
    params, opt_state = carry
    loss, grads = jax.value_and_grad(problem.loss_fn)(params, batch)
    updates, opt_state = opt.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), loss

  (params, _), losses = jax.lax.scan(step, (params, opt_state), batches)
  metrics = {} if problem.eval_fn is None else dict(problem.eval_fn(params))
  return losses, metrics


@functools.partial(jax.jit, static_argnames=('problem',))
def _sweep(
  learning_rates: jax.Array, seeds: jax.Array, batches: chex.ArrayTree | None, problem: _Problem
) -> tuple[jax.Array, dict[str, jax.Array]]:
  run = functools.partial(_one_run, problem=problem)
  over_seeds = jax.vmap(run, in_axes=(None, 0, None))  # init once per seed
  return jax.vmap(over_seeds, in_axes=(0, None, None))(learning_rates, seeds, batches)


def lr_sweep(
  optimizer: Callable[..., optax.GradientTransformation],
  loss_fn: Callable[[optax.Params, chex.ArrayTree], jax.Array],
  init_fn: Callable[[jax.Array], optax.Params],
  batches: chex.ArrayTree | Callable[[jax.Array], chex.ArrayTree],
  learning_rates: Sequence[float] | np.ndarray | jax.Array,
  seeds: Sequence[int] | np.ndarray | jax.Array,
  *,
  eval_fn: Callable[[optax.Params], Mapping[str, jax.Array]] | None = None,
) -> SweepResult:
  """Trains one model per (learning rate, seed) pair, all in one jitted, vmapped program.

  Args:
    optimizer: called as ``optimizer(learning_rate=lr)`` with a traced scalar,
      e.g. ``optax.inject_hyperparams(rmsprop_optax.rmsprop)`` (other
      hyperparameters fixed with :func:`functools.partial` or a ``def``).
      With ``inject_hyperparams`` the learning rate lives in the state, which
      is batched over the grid like the params.
    loss_fn: ``loss_fn(params, batch) -> scalar``, differentiated w.r.t. params.
    init_fn: ``init_fn(key) -> params``. Run ``(lr, seed)`` uses
      ``init_key, data_key = jax.random.split(jax.random.key(seed))``, so a
      single run can be reproduced outside the sweep.
    batches: a pytree whose leaves have a leading step axis ``T``, the same
      batches for every run; or a callable ``batches(key) -> pytree`` that
      makes one seed's batches inside the program from ``data_key``.
    learning_rates: the ``K`` learning rates.
    seeds: the ``S`` integer random seeds.
    eval_fn: ``eval_fn(params) -> {name: array}`` on the final params
      (scalars such as a test accuracy; arrays are allowed).

  The callables are static arguments of the compiled program: the same
  callables with same-shaped inputs reuse one compilation (new learning
  rates or seeds do not recompile); new function objects (a fresh
  ``lambda``) compile again.

  Returns:
    A :class:`SweepResult`; axis 0 is the learning rate, axis 1 the seed.
  """
  lrs = jnp.asarray(learning_rates, jnp.float32)
  seed_array = jnp.asarray(seeds, jnp.int32)
  if lrs.ndim != 1 or seed_array.ndim != 1 or lrs.size == 0 or seed_array.size == 0:
    raise ValueError(
      f'learning_rates and seeds must be non-empty 1-D, got shapes {lrs.shape}, {seed_array.shape}'
    )
  batches_fn = batches if callable(batches) else None
  problem = _Problem(optimizer, loss_fn, init_fn, eval_fn, batches_fn)
  losses, metrics = _sweep(lrs, seed_array, None if callable(batches) else batches, problem)
  return SweepResult(lrs, seed_array, losses, metrics)


class Band(NamedTuple):
  """The learning rates within a tolerance of the best (see :func:`tolerance_band`)."""

  best_lr: float
  best_value: float
  low: float
  high: float
  decades: float
  at_edge: bool


def tolerance_band(
  learning_rates: Sequence[float] | np.ndarray,
  values: Sequence[float] | np.ndarray,
  *,
  tolerance: float,
  higher_is_better: bool,
) -> Band:
  """The contiguous range of learning rates around the best whose value is within a tolerance.

  ``values[i]`` is the metric at ``learning_rates[i]`` (a log grid, ascending;
  typically the mean over seeds). A value qualifies when it is at least
  ``(1 - tolerance) * best`` (``higher_is_better``, e.g. accuracy) or at most
  ``(1 + tolerance) * best`` (e.g. perplexity); NaN never qualifies. The band
  grows from the best grid point while its neighbours qualify; each end is
  then placed where the straight line, in log learning rate, between the last
  qualifying point and the next one crosses the threshold, so the width is
  not quantised to the grid spacing. ``at_edge`` says a band reached an end
  of the grid (its width is then a lower bound).

  >>> band = tolerance_band([1e-3, 1e-2, 1e-1, 1.0], [0.5, 0.9, 1.0, 0.8],
  ...                       tolerance=0.1, higher_is_better=True)  # threshold 0.9
  >>> band.best_lr, band.low, round(band.high, 3), band.decades, band.at_edge
  (0.1, 0.01, 0.316, 1.5, False)
  """
  lrs = np.asarray(learning_rates, np.float64)
  vals = np.asarray(values, np.float64)
  if lrs.shape != vals.shape or lrs.ndim != 1 or np.any(np.diff(lrs) <= 0) or np.any(lrs <= 0):
    raise ValueError('learning_rates must be positive, ascending and match values in shape')
  score = vals if higher_is_better else -vals
  score = np.where(np.isfinite(score), score, -np.inf)
  if not np.any(np.isfinite(score)):
    return Band(math.nan, math.nan, math.nan, math.nan, 0.0, False)
  best = int(np.argmax(score))
  best_value = float(vals[best])
  threshold = best_value * (1 - tolerance if higher_is_better else 1 + tolerance)
  ok = (vals >= threshold) if higher_is_better else (vals <= threshold)
  ok &= np.isfinite(vals)
  lo = best
  while lo > 0 and ok[lo - 1]:
    lo -= 1
  hi = best
  while hi < len(lrs) - 1 and ok[hi + 1]:
    hi += 1
  logs = np.log10(lrs)

  def crossing(inside: int, outside: int) -> float:
    v_in, v_out = vals[inside], vals[outside]
    if not np.isfinite(v_out) or v_out == v_in:
      return float(logs[inside])
    frac = (threshold - v_in) / (v_out - v_in)
    return float(logs[inside] + np.clip(frac, 0.0, 1.0) * (logs[outside] - logs[inside]))

  log_lo = crossing(lo, lo - 1) if lo > 0 else float(logs[0])
  log_hi = crossing(hi, hi + 1) if hi < len(lrs) - 1 else float(logs[-1])
  return Band(
    best_lr=float(lrs[best]),
    best_value=best_value,
    low=float(10**log_lo),
    high=float(10**log_hi),
    decades=log_hi - log_lo,
    at_edge=lo == 0 or hi == len(lrs) - 1,
  )
