"""Helpers shared by the application demos (digits, char_lstm, dqn, matrix_factorization).

Training loops are ``lax.scan`` over steps, jitted once per optimizer and run
in chunks so a tqdm bar can advance between chunks without leaving the
compiled code inside a chunk.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import jax
import numpy as np


@contextmanager
def progress_bar(total: int, desc: str, enabled: bool) -> Iterator[Callable[[int], None]]:
  """Yields ``advance(n)``; a tqdm bar when ``enabled``, else a no-op."""
  if not enabled:
    yield lambda n: None
    return
  from tqdm.auto import tqdm  # Imported lazily: tests run without bars.

  with tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True) as bar:
    yield bar.update


def scan_in_chunks(
  step: Callable[[Any, Any], tuple[Any, Any]],
  carry: Any,
  xs: Any,
  num_chunks: int,
  *,
  desc: str = '',
  progress: bool = False,
  after_chunk: Callable[[Any], None] | None = None,
) -> tuple[Any, Any]:
  """``lax.scan(step, carry, xs)`` split into ``num_chunks`` equal jitted pieces.

  ``xs`` is a pytree whose leaves have a leading axis of length ``T`` divisible
  by ``num_chunks``. The chunk function is compiled once (same shapes every
  call). ``after_chunk(carry)``, when given, is called after each chunk (e.g.
  to evaluate on held-out data). Returns the final carry and the per-step
  outputs (NumPy, length T).
  """
  leaves = jax.tree.leaves(xs)
  total = leaves[0].shape[0]
  if total % num_chunks:
    raise ValueError(f'{total} steps do not split into {num_chunks} chunks')
  size = total // num_chunks
  run_chunk = jax.jit(lambda c, x: jax.lax.scan(step, c, x))
  outs = []
  with progress_bar(total, desc, progress) as advance:
    for i in range(num_chunks):
      chunk = jax.tree.map(lambda a, i=i: a[i * size : (i + 1) * size], xs)
      carry, out = run_chunk(carry, chunk)
      outs.append(jax.device_get(out))
      if after_chunk is not None:
        after_chunk(carry)
      advance(size)
  stacked = jax.tree.map(lambda *a: np.concatenate(a, axis=0), *outs)
  return carry, stacked


def chunk_means(values: np.ndarray, num_points: int) -> list[float]:
  """Averages ``values`` over ``num_points`` equal consecutive windows (for curves)."""
  values = np.asarray(values, dtype=np.float64)
  usable = (len(values) // num_points) * num_points
  return [float(v) for v in values[:usable].reshape(num_points, -1).mean(axis=1)]


def seed_range(seed: int, num_seeds: int | None, default: int) -> list[int]:
  """``num_seeds`` consecutive seeds from ``seed`` (``default`` of them when ``None``)."""
  n = default if num_seeds is None else num_seeds
  if n < 1:
    raise ValueError(f'num_seeds must be at least 1, got {n}')
  return list(range(seed, seed + n))


def run_seeds(
  run_seed: Callable[..., dict[str, Any]],
  *,
  fast: bool,
  seed: int,
  progress: bool,
  num_seeds: int | None,
) -> dict[str, Any]:
  """A seeded demo's ``run``: ``run_seed`` for the seeds ``seed .. seed + num_seeds - 1``.

  One seed (the default) gives that run's result; several, the seed means of
  its metrics and curves, with each metric's per-seed values in
  ``seed_metrics`` (the table's mean and range; :func:`over_seeds`).
  """
  seeds = seed_range(seed, num_seeds, 1)
  return over_seeds(lambda s: run_seed(fast=fast, seed=s, progress=progress), seeds)


def over_seeds(run_one: Callable[[int], dict[str, Any]], seeds: Sequence[int]) -> dict[str, Any]:
  """``run_one(seed)`` for each of ``seeds``, combined into one result dict.

  One seed: that run's result as it is. Several: every entry that is the same
  on every seed is kept as it is (names, learning rates, x values); numbers
  that differ are averaged over the seeds, element by element inside lists and
  dicts (so ``metrics`` and the curves are seed means). Either way the result
  gains ``seeds`` and ``seed_metrics``, each metric's per-seed values
  (``{name: {metric: [value per seed]}}``), from which the table shows the
  mean and the range.
  """
  seeds = list(seeds)
  results = [run_one(s) for s in seeds]
  out = dict(results[0]) if len(results) == 1 else mean_over_seeds(results)
  out['seeds'] = seeds
  out['seed_metrics'] = {
    name: {metric: [float(r['metrics'][name][metric]) for r in results] for metric in metrics}
    for name, metrics in results[0]['metrics'].items()
  }
  return out


def mean_over_seeds(values: Sequence[Any]) -> Any:
  """The seed mean of equally structured values (see :func:`over_seeds`).

  Equal on every seed: the first, unchanged. Dicts (same keys) and lists or
  tuples (same length): entry by entry. Real numbers: their mean, a float.
  Anything else that differs between seeds is an error.
  """
  first = values[0]
  if all(_same(v, first) for v in values[1:]):
    return first
  if isinstance(first, dict):
    if any(set(v) != set(first) for v in values):
      raise ValueError(f'the seeds returned different keys: {[sorted(v) for v in values]}')
    return {k: mean_over_seeds([v[k] for v in values]) for k in first}
  if isinstance(first, list | tuple):
    if any(len(v) != len(first) for v in values):
      raise ValueError(f'the seeds returned lists of different lengths: {[len(v) for v in values]}')
    return type(first)(mean_over_seeds(column) for column in zip(*values, strict=True))
  if all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values):
    return float(np.mean(np.asarray(values, dtype=np.float64)))
  raise ValueError(f'cannot average over seeds: {values!r}')


def _same(a: Any, b: Any) -> bool:
  """``a == b`` for nested dicts, lists and numbers (no NumPy arrays inside)."""
  try:
    return bool(a == b)
  except ValueError:  # an array's elementwise comparison
    return False
