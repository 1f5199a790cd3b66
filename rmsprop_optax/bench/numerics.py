"""The benchmarked configurations step like their optax peers (checked beside every timed row)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from rmsprop_optax.bench.configs import CONFIGS, QUANTIZED, materialize


def check_numerics(config: str, steps: int = 3) -> float:
  """Max relative difference between ours and optax after ``steps`` steps (small tree).

  Float32-state configs: elementwise, relative to the optax param. Quantized
  configs (one leaf of 8192 elements, so that it gets quantized state):
  ``max |p_ours - p_optax| / max |p_optax - p_0|`` per leaf, the error of the
  parameter change relative to its size; the stored moments are rounded, and
  a difference relative to params near zero would say nothing.
  """
  ours_fn, optax_fn, _ = CONFIGS[config]
  shapes = {'a': (64, 128), 'b': (7,)} if config in QUANTIZED else {'a': (5, 7), 'b': (7,)}
  params = materialize(shapes, 0, 1.0)
  results = []
  for opt in (ours_fn(), optax_fn()):
    p, s = params, opt.init(params)
    # Quantized state op by op compiles every small op of the code lookup: jit.
    update = jax.jit(opt.update) if config in QUANTIZED else opt.update
    for i in range(steps):
      g = materialize(shapes, 10 + i, 1.0)
      u, s = update(g, s, p)
      p = optax.apply_updates(p, u)
    results.append(p)
  leaves = zip(jax.tree.leaves(results[0]), jax.tree.leaves(results[1]), jax.tree.leaves(params))
  if config in QUANTIZED:
    diffs = [float(jnp.max(jnp.abs(x - y)) / jnp.max(jnp.abs(y - p0))) for x, y, p0 in leaves]
  else:
    diffs = [float(jnp.max(jnp.abs(x - y) / jnp.maximum(jnp.abs(y), 1e-6))) for x, y, _ in leaves]
  return max(diffs)
