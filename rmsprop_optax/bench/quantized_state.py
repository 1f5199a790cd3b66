"""What quantized state costs: its bytes against float32 state, and where its step's time goes."""

from __future__ import annotations

import gc
import statistics
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rmsprop_optax import _quantize
from rmsprop_optax._quantize import quantized
from rmsprop_optax._rmsprop import rmsprop
from rmsprop_optax.bench.configs import (
  CONFIGS,
  LR,
  MOMENTUM,
  QUANTIZED,
  materialize,
  tree_shapes,
)
from rmsprop_optax.bench.timing import JaxRunner, median_seconds


def state_bytes(opt: Any, params: Any) -> int:
  """Bytes of ``opt``'s state for ``params``: sum of size * itemsize over ``jax.eval_shape(opt.init)``."""
  shapes = jax.eval_shape(opt.init, params)
  return int(sum(x.size * jnp.dtype(x.dtype).itemsize for x in jax.tree.leaves(shapes)))


def state_bytes_table(
  tree: str, quick: bool, one_leaf_elements: int | None
) -> list[dict[str, Any]]:
  """Float32 against 8- and 4-bit state bytes for one tree (plain and centered + momentum)."""
  shapes = tree_shapes(tree, quick, one_leaf_elements)
  params = {k: jax.ShapeDtypeStruct(s, jnp.float32) for k, s in shapes.items()}
  rows = []
  settings_kw: tuple[tuple[str, dict[str, Any]], ...] = (
    ('plain', {}),
    ('centered_momentum', {'centered': True, 'momentum': MOMENTUM}),
  )
  for settings, kw in settings_kw:
    f32 = state_bytes(rmsprop(LR, **kw), params)
    q8 = state_bytes(rmsprop(LR, accumulator_dtype=quantized(8), **kw), params)
    q4 = state_bytes(rmsprop(LR, accumulator_dtype=quantized(4), **kw), params)
    rows.append(
      {
        'tree': tree,
        'settings': settings,
        'n_params': int(sum(np.prod(s) for s in shapes.values())),
        'float32': f32,
        'q8': q8,
        'q4': q4,
        'q8_over_float32': q8 / f32,
        'q4_over_float32': q4 / f32,
      }
    )
  return rows


def quantize_cost(n_elements: int, calls: int = 5) -> dict[str, Any]:
  """Where the 8-bit step's time goes on one flat leaf: its parts timed alone.

  Each part is its own jitted program on ``n_elements`` float32 values (block
  256, the unsigned map of ``nu``): the whole float32-state and 8-bit plain
  steps (donated), ``quantize`` (block absmax, normalize, code lookup), the
  code lookup alone (the bucket table ``quantize`` uses, and for comparison
  ``jnp.searchsorted`` over the 255 midpoints, unrolled and default ``'scan'``),
  ``dequantize``, and its two halves: the code-map gather and the per-element
  block scale (a broadcast over each block, as ``dequantize`` does it).
  """
  shapes: dict[str, tuple[int, ...]] = {'w': (n_elements,)}
  params = materialize(shapes, 0, 1.0)
  grads = materialize(shapes, 1, 1e-2)
  x = jnp.abs(grads['w'])
  normalized = x / jnp.max(x)
  # nu's map as quantized() stores it: no code for 0.
  q = _quantize.quantize(x, bits=8, block_size=256, signed=False, unsigned_zero=False)
  table = _quantize.code_map(8, False, unsigned_zero=False)
  midpoints = jnp.asarray((table[1:] + table[:-1]) / 2)
  n_blocks = q.scale.shape[-1]
  parts: dict[str, tuple[Any, tuple[Any, ...]]] = {
    'quantize': (
      jax.jit(
        lambda v: _quantize.quantize(v, bits=8, block_size=256, signed=False, unsigned_zero=False)
      ),
      (x,),
    ),
    'code_lookup': (
      jax.jit(lambda v: _quantize._nearest_codes(v, 8, False, unsigned_zero=False)),
      (normalized,),
    ),
    'code_lookup_scan_unrolled': (
      jax.jit(lambda v: jnp.searchsorted(midpoints, v, method='scan_unrolled').astype(jnp.uint8)),
      (normalized,),
    ),
    'code_lookup_scan': (
      jax.jit(lambda v: jnp.searchsorted(midpoints, v, method='scan').astype(jnp.uint8)),
      (normalized,),
    ),
    'dequantize': (jax.jit(lambda a: a.dequantize()), (q,)),
    'code_map_gather': (
      jax.jit(lambda c: jnp.asarray(table)[c.astype(jnp.int32)]),
      (q.codes,),
    ),
    'scale_broadcast': (
      jax.jit(lambda s: jnp.broadcast_to(s[:, None], (n_blocks, 256)).reshape(-1)),
      (q.scale,),
    ),
  }
  seconds: dict[str, float] = {}
  for name, opt in (
    ('float32_step', rmsprop(LR)),
    ('q8_step', rmsprop(LR, accumulator_dtype=quantized(8))),
  ):
    runner = JaxRunner(opt, params, grads)
    seconds[name] = statistics.median(runner.run(1) for _ in range(calls))
    del runner
  for name, (fn, args) in parts.items():
    seconds[name] = median_seconds(fn, *args, calls=calls)
  base = seconds['float32_step']
  gc.collect()
  return {
    'elements': n_elements,
    'seconds': seconds,
    'over_float32_step': {k: v / base for k, v in seconds.items()},
  }


def skip_reason(
  config: str,
  tree: str,
  quick: bool,
  one_leaf_elements: int | None,
  quantized_trees: set[str] | None,
) -> str | None:
  """Why a quantized row is not timed, or None."""
  if quantized_trees is not None and tree not in quantized_trees:
    return '--quick times quantized state on ' + ', '.join(sorted(quantized_trees)) + ' only'
  shapes = tree_shapes(tree, quick, one_leaf_elements)
  params = {k: jax.ShapeDtypeStruct(s, jnp.float32) for k, s in shapes.items()}
  ours = CONFIGS[config][0]()
  if state_bytes(ours, params) == state_bytes(CONFIGS[QUANTIZED[config][0]][0](), params):
    return 'no leaf is large enough to get quantized state'
  return None
