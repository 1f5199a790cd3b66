"""Compile time against leaf count: trace, lower and XLA compile, timed apart.

Beside ours and optax, the least program with the step's inputs and outputs
(one trivial kernel per output array). Then ours with 8-bit state against
ours with float32 state, on leaves of distinct shapes ``(64 + i, 128)``
(every shape traced and compiled anew, as in a model without a layer
``scan``).
"""

from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rmsprop_optax.bench.configs import CONFIGS
from rmsprop_optax.bench.timing import step_fn

COMPILE_SHAPE = (64, 64)
# The quantized comparison's leaves: (64 + i, 128), distinct, 8192 elements and up.
DISTINCT_WIDTH = 128


def _time_lowering(fn: Any, *args: Any) -> dict[str, float]:
  jax.clear_caches()
  t0 = time.perf_counter()
  traced = fn.trace(*args)
  t1 = time.perf_counter()
  lowered = traced.lower()
  t2 = time.perf_counter()
  lowered.compile()
  t3 = time.perf_counter()
  return {'trace': t1 - t0, 'lower': t2 - t1, 'compile': t3 - t2, 'total': t3 - t0}


def _compile_params(n_leaves: int) -> dict[str, jax.ShapeDtypeStruct]:
  return {f'w{i:05d}': jax.ShapeDtypeStruct(COMPILE_SHAPE, jnp.float32) for i in range(n_leaves)}


def _distinct_params(n_leaves: int) -> dict[str, jax.ShapeDtypeStruct]:
  return {
    f'w{i:05d}': jax.ShapeDtypeStruct((64 + i, DISTINCT_WIDTH), jnp.float32)
    for i in range(n_leaves)
  }


def time_compile(opt: Any, n_leaves: int, *, distinct: bool = False) -> dict[str, float]:
  params = (_distinct_params if distinct else _compile_params)(n_leaves)
  state = jax.eval_shape(opt.init, params)
  return _time_lowering(step_fn(opt), params, state, params)


def time_compile_floor(opt: Any, n_leaves: int) -> dict[str, float]:
  """Compile time of the least program with the step's inputs and outputs.

  Every output array of the step (each param and each state leaf) is produced
  by one trivial kernel (``x + 1``). A step that keeps one state array per
  param leaf, as the design requires, cannot have fewer output arrays; without
  multi-output fusion (XLA:CPU) each is at least one kernel to compile.
  """
  params = _compile_params(n_leaves)
  state = jax.eval_shape(opt.init, params)

  def least(params: Any, state: Any, grads: Any) -> tuple[Any, Any]:
    del grads
    bump = lambda x: x + jnp.ones((), x.dtype)
    return jax.tree.map(bump, params), jax.tree.map(bump, state)

  return _time_lowering(jax.jit(least, donate_argnums=(0, 1)), params, state, params)


def compile_sweep(config: str, leaf_counts: list[int]) -> dict[str, Any]:
  """Rows of compile times per leaf count; ``config``, and its 8-bit form (``config + '_q8'``) if any."""
  ours_fn, optax_fn, _ = CONFIGS[config]
  q8 = CONFIGS.get(config + '_q8')
  rows = []
  for i, n in enumerate(leaf_counts):
    order = [('ours', ours_fn), ('optax', optax_fn)]
    if i % 2:
      order.reverse()
    row: dict[str, Any] = {'n_leaves': n}
    for who, fn in order:
      row[who] = time_compile(fn(), n)
    row['floor'] = time_compile_floor(ours_fn(), n)
    row['ratio_ours_over_optax'] = row['ours']['total'] / row['optax']['total']
    row['ratio_floor_over_optax'] = row['floor']['total'] / row['optax']['total']
    if q8 is not None:
      q8_order = [('distinct_q8', q8[0]), ('distinct_f32', ours_fn)]
      if i % 2:
        q8_order.reverse()
      for who, fn in q8_order:
        row[who] = time_compile(fn(), n, distinct=True)
      row['ratio_q8_over_f32'] = row['distinct_q8']['total'] / row['distinct_f32']['total']
    rows.append(row)
  slopes = {}
  if len(leaf_counts) > 1:
    for who in ('ours', 'optax', 'floor'):
      slope = np.polyfit(leaf_counts, [r[who]['total'] for r in rows], 1)[0]
      slopes[who] = float(slope)
  return {
    'config': config,
    'leaf_shape': list(COMPILE_SHAPE),
    'distinct_leaf_shapes': f'(64 + i, {DISTINCT_WIDTH})',
    'rows': rows,
    'seconds_per_leaf': slopes,
  }
