"""Hyperparameter validation and trace-time tree checks.

Constant hyperparameters are checked when a transformation is built, so a bad
value fails at the call site with a message that names the argument. Values
that arrive as arrays (for example from ``optax.inject_hyperparams``) are
checked only when they are concrete; traced values are never branched on.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np

from rmsprop_optax import _quantize


def concrete_value(value: Any) -> float | None:
  """Returns ``value`` as a Python float when it is a concrete real scalar.

  Callables (schedules), tracers and non-scalar arrays give ``None``: they are
  not checked at build time.
  """
  if callable(value) or isinstance(value, jax.core.Tracer):
    return None
  if isinstance(value, bool):
    raise TypeError(f'expected a number, got the bool {value!r}')
  if isinstance(value, numbers.Real):
    return float(value)
  if isinstance(value, (np.ndarray, np.generic, jax.Array)):
    if np.ndim(value) != 0:
      return None
    arr = np.asarray(value)
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
      raise TypeError(f'expected a real number, got {value!r}')
    return float(arr)
  raise TypeError(f'expected a number, an array or a schedule, got {type(value).__name__}')


def check_range(
  name: str,
  value: Any,
  *,
  low: float | None = None,
  high: float | None = None,
  high_inclusive: bool = True,
) -> None:
  """Raises ``ValueError`` naming ``name`` if a concrete ``value`` is out of range.

  ``low`` is always inclusive; ``high`` is inclusive unless ``high_inclusive``
  is false. NaN and infinities are always out of range.
  """
  try:
    v = concrete_value(value)
  except TypeError as e:
    raise TypeError(f'`{name}`: {e}') from None
  if v is None:
    return
  ok = bool(np.isfinite(v))  # NaN and inf are never meaningful hyperparameters
  if low is not None:
    ok = ok and v >= low
  if high is not None:
    ok = ok and (v <= high if high_inclusive else v < high)
  if not ok:
    lo = '' if low is None else f'{low} <= '
    hi = '' if high is None else (f' <= {high}' if high_inclusive else f' < {high}')
    raise ValueError(f'`{name}` must satisfy {lo}{name}{hi}, got {value!r}')


def is_python_zero(value: Any) -> bool:
  """True for a concrete Python (or NumPy) zero: the only value we skip work for."""
  return (
    isinstance(value, (int, float, np.generic))
    and not isinstance(value, bool)
    and float(value) == 0.0
  )


def _path_str(path: tuple[Any, ...]) -> str:
  return jax.tree_util.keystr(path) or '<root>'


def _same_treedef(a: Any, b: Any) -> bool:
  return bool(a == b)


def _first_mismatch(updates: Any, reference: Any) -> str:
  """Describes the first path where two trees differ in structure or shape."""
  u_leaves, u_def = jax.tree_util.tree_flatten_with_path(updates)
  r_leaves, r_def = jax.tree_util.tree_flatten_with_path(reference)
  if not _same_treedef(u_def, r_def):
    u_paths = [_path_str(p) for p, _ in u_leaves]
    r_paths = [_path_str(p) for p, _ in r_leaves]
    for up, rp in zip(u_paths, r_paths):
      if up != rp:
        return f'at {up} (updates) vs {rp} (state): the tree structures differ'
    i = min(len(u_paths), len(r_paths))
    if len(u_paths) > len(r_paths):
      return f'at {u_paths[i]}: updates has a leaf the state does not'
    if len(r_paths) > len(u_paths):
      return f'at {r_paths[i]}: the state has a leaf updates does not'
    return f'the tree structures differ: {u_def} vs {r_def}'
  for (path, u), (_, r) in zip(u_leaves, r_leaves):
    if np.shape(u) != np.shape(r):
      return (
        f'at {_path_str(path)}: updates has shape {np.shape(u)}, the state has shape {np.shape(r)}'
      )
  return 'the trees differ'


def check_updates_match_state(updates: Any, reference: Any, what: str) -> None:
  """Trace-time check that ``updates`` has the state's structure and shapes.

  chex raises ``AssertionError``; we convert it to a ``ValueError`` that names
  the first mismatching path, which is what a user needs to find the bug.
  """
  if isinstance(reference, _quantize.QuantizedTree):
    # Quantized state stands for float32 arrays of the params' shapes.
    reference = reference.shapes()
  else:
    _check_not_lost_quantized_structure(reference, what)
  try:
    chex.assert_trees_all_equal_structs(updates, reference)
    chex.assert_trees_all_equal_shapes(updates, reference)
  except AssertionError as e:
    raise ValueError(
      f'{what}: `updates` does not match the optimizer state '
      f'{_first_mismatch(updates, reference)}. Was the state initialised '
      f'with different params? ({str(e).splitlines()[0]})'
    ) from None


def _check_not_lost_quantized_structure(state: Any, what: str) -> None:
  """Raises ``ValueError`` when quantized state no longer has the form this version writes.

  Two cases, told apart from params that changed: a framework rebuilt the
  :class:`~rmsprop_optax.QuantizedTree` as a plain mapping (its static spec
  is then lost), or the state was saved by a version that kept one
  ``{'codes', 'scale'}`` node per param.
  """
  if isinstance(state, Mapping) and set(state) == {'codes', 'scale', 'dense'}:
    raise ValueError(
      f'{what}: the quantized optimizer state reached update() as a plain mapping with keys '
      "'codes', 'scale' and 'dense': something rebuilt the QuantizedTree that init() made "
      '(and lost its spec). Pass the state back as init() and update() return it; to '
      'restore a checkpoint, give the checkpointer the structure of opt.init(params) (or '
      'jax.eval_shape of it) as the target.'
    )
  for path, node in jax.tree_util.tree_flatten_with_path(
    state, is_leaf=lambda x: isinstance(x, Mapping) and set(x) == {'codes', 'scale'}
  )[0]:
    if isinstance(node, Mapping) and set(node) == {'codes', 'scale'}:
      raise ValueError(
        f"{what}: the optimizer state holds a {{'codes', 'scale'}} node at "
        f'{_path_str(path)}, the per-param layout of quantized state before rmsprop_optax '
        '0.2. Quantized state is now a QuantizedTree of three trees (codes, scale, dense) '
        "with the params' structure. Re-create the state with opt.init(params), or move "
        "each node's 'codes' and 'scale' to QuantizedTree.codes and .scale at the same path."
      )


def check_float_updates(updates: Any, what: str) -> None:
  """Raises ``TypeError`` for integer or boolean gradients (trace time)."""
  for path, g in jax.tree_util.tree_flatten_with_path(updates)[0]:
    dtype = jnp.result_type(g)
    if not jnp.issubdtype(dtype, jnp.inexact):
      raise TypeError(
        f'{what}: gradients must be floating point or complex, got dtype '
        f'{dtype} at {_path_str(path)}'
      )


def check_array_leaves(params: Any, what: str) -> None:
  """Raises ``TypeError`` naming the first leaf of ``params`` that is not an array.

  An Equinox model holds functions and other Python objects beside its
  arrays; without this, ``init`` fails deep inside JAX with "Cannot determine
  dtype of <custom_jvp ...>".
  """
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    if isinstance(leaf, (jax.Array, np.ndarray, np.generic, numbers.Number)):
      continue
    if hasattr(leaf, 'shape') and hasattr(leaf, 'dtype'):  # e.g. jax.ShapeDtypeStruct
      continue
    raise TypeError(
      f'{what}: params must be a tree of arrays, but the leaf at {_path_str(path)} is '
      f'{type(leaf).__name__} ({leaf!r:.80}). Pass only the arrays: for an Equinox module, '
      f'`opt.init(eqx.filter(model, eqx.is_array))` (and filter the gradients the same '
      f'way, as `eqx.filter_grad` does); elsewhere, replace non-array leaves with None.'
    )
