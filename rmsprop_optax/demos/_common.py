"""Helpers shared by the application demos (digits, char_lstm, dqn, matrix_factorization).

Training loops are ``lax.scan`` over steps, jitted once per optimizer and run
in chunks so a tqdm bar can advance between chunks without leaving the
compiled code inside a chunk.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
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
