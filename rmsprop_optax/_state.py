"""Optimizer state: the one place that decides its dtypes, stores it and steps it by leaf.

The policy, for a parameter of dtype ``p`` and a gradient of dtype ``g``:

- **State** (``nu``, ``mu``, the momentum buffer): ``accumulator_dtype`` if
  given, else float32 for float16 and bfloat16 params, else ``p``. 16-bit
  accumulators lose the small ``(1 - decay) * g**2`` increments and stall
  (https://github.com/google-deepmind/optax/issues/1552). Second moments are
  real even for complex params. The state keeps its dtype across steps.
- **Quantized state** (``accumulator_dtype=rmsprop_optax.quantized(...)``):
  leaves of at least ``min_size`` real elements store blockwise 8- or 4-bit
  codes (:mod:`rmsprop_optax._quantize`); smaller leaves keep float32 state.
- **Arithmetic**: in the state's dtype widened to at least float32
  (quantized state: dequantized to float32, requantized after the step).
- **Output**: the gradient's dtype ``g``. :func:`rmsprop_optax.rmsprop` runs
  its whole chain in at least float32 and rounds once, at the end: rounding
  after the rescaling instead would lose the ``lr * s`` product's precision and
  can overflow float16 (``g / sqrt(eps)`` exceeds 65504 before the learning
  rate brings it down).
"""

from __future__ import annotations

from typing import Any, TypeAlias, cast

import jax
import jax.numpy as jnp
import optax

from rmsprop_optax import _quantize

# What ``accumulator_dtype=`` accepts, and what a state leaf can be.
AccumulatorDtype: TypeAlias = 'jax.typing.DTypeLike | _quantize.Quantized | None'
StateLeaf: TypeAlias = 'jax.Array | _quantize.QuantizedArray'

_SIXTEEN_BIT_FLOATS = (jnp.dtype(jnp.float16), jnp.dtype(jnp.bfloat16))


def state_dtype(
  param_dtype: jax.typing.DTypeLike, accumulator_dtype: jax.typing.DTypeLike | None, *, real: bool
) -> jnp.dtype:
  """The dtype of an accumulator for a parameter of ``param_dtype``.

  ``real=True`` is for second moments; otherwise a complex param gets a complex
  accumulator of the chosen precision.
  """
  param_dtype = jnp.dtype(param_dtype)
  if accumulator_dtype is not None:
    dtype = jnp.dtype(accumulator_dtype)
  elif param_dtype in _SIXTEEN_BIT_FLOATS:
    dtype = jnp.dtype(jnp.float32)
  else:
    dtype = param_dtype
  if not jnp.issubdtype(dtype, jnp.inexact):
    raise TypeError(
      f'accumulators must be floating point, got {dtype} (param dtype '
      f'{param_dtype}, accumulator_dtype={accumulator_dtype!r})'
    )
  real_dtype = jnp.finfo(dtype).dtype
  if not real and jnp.issubdtype(param_dtype, jnp.complexfloating):
    return jnp.result_type(real_dtype, jnp.complex64)
  return real_dtype


def compute_dtype(dtype: jax.typing.DTypeLike) -> jnp.dtype:
  """Arithmetic precision for values stored as ``dtype``: at least float32."""
  return jnp.promote_types(dtype, jnp.float32)


def init_state(
  params: optax.Params,
  value: jax.typing.ArrayLike,
  accumulator_dtype: AccumulatorDtype,
  *,
  real: bool,
) -> optax.Params | _quantize.QuantizedTree:
  """A state tree filled with ``value``: the params' shapes and sharding, the policy's dtypes.

  A :func:`~rmsprop_optax.quantized` spec gives a :class:`~rmsprop_optax.QuantizedTree`
  (``real`` picks the unsigned code map).

  Outside ``jit`` ``jnp.full_like`` keeps a concrete array's sharding. Under
  ``jit`` a constant has no data dependence on the param, so XLA's sharding
  propagation leaves it replicated on Auto-axis meshes (what happens to
  ``optax.rmsprop``'s state). Selecting between two copies of ``value`` on a
  predicate computed from the param gives the propagation a path to follow and
  is exact for every input, NaN and inf included.
  """
  leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
  paths = [path for path, _ in leaves]
  params_def = jax.tree.structure(params)

  def fill(p: jax.Array, dtype: jnp.dtype) -> jax.Array:
    if isinstance(p, jax.core.Tracer):
      return jnp.where(jnp.isnan(p), value, value).astype(dtype)
    return jnp.full_like(p, value, dtype=dtype)

  if not isinstance(accumulator_dtype, _quantize.Quantized):
    return jax.tree.unflatten(
      params_def,
      [
        fill(p, _leaf_state_dtype(path, p, accumulator_dtype, real=real))
        for path, p in zip(paths, [p for _, p in leaves])
      ],
    )
  spec = accumulator_dtype
  signed = not real if spec.signed is None else spec.signed
  stored: list[StateLeaf] = []
  for path, p in leaves:
    if jnp.issubdtype(jnp.result_type(p), jnp.complexfloating):
      raise TypeError(
        f'accumulator_dtype=quantized(...) supports real params only, got a '
        f'{jnp.result_type(p)} param at {jax.tree_util.keystr(path)}; use a float '
        'accumulator_dtype for complex params'
      )
    _leaf_state_dtype(path, p, jnp.float32, real=real)  # the same checks as float state
    if _quantize.quantizable(p, spec):
      stored.append(_quantize.init(p, value, spec, signed=signed))
    else:
      stored.append(fill(p, jnp.dtype(jnp.float32)))
  empty = _quantize.QuantizedTree(None, None, None, spec, signed)
  return empty.replace_leaves(params_def, stored)


def _leaf_state_dtype(
  path: tuple[Any, ...], p: Any, accumulator_dtype: jax.typing.DTypeLike | None, *, real: bool
) -> jnp.dtype:
  """:func:`state_dtype` for the param at ``path``, naming it and the fix when it is refused."""
  param_dtype = jnp.result_type(p)
  if not jnp.issubdtype(param_dtype, jnp.inexact):
    raise TypeError(
      f'params must be floating point (or complex) to be optimized, but the param at '
      f'{jax.tree_util.keystr(path) or "<root>"} has dtype {param_dtype}. Leave it out of '
      'the tree the optimizer sees (e.g. with optax.masked or by partitioning the params), '
      'or cast it to a float dtype.'
    )
  return state_dtype(param_dtype, accumulator_dtype, real=real)


def load(stored: StateLeaf) -> jax.Array:
  """A state leaf as an array in its arithmetic precision (dequantized if stored as codes)."""
  if isinstance(stored, _quantize.QuantizedArray):
    return stored.dequantize()
  return stored.astype(compute_dtype(stored.dtype))


def store(value: jax.Array, like: StateLeaf) -> StateLeaf:
  """``value`` stored as ``like`` is: cast to its dtype, or requantized like it."""
  if isinstance(like, _quantize.QuantizedArray):
    return _quantize.requantize(value, like)
  return value.astype(like.dtype)


def step_leaf(
  fn: Any,
  x: jax.Array,
  stored: list[StateLeaf],
  tables: list[_quantize.Tables] | None = None,
  *,
  chunked: bool = True,
  inputs: tuple[jax.Array, ...] = (),
) -> tuple[jax.Array, list[StateLeaf]]:
  """``fn(x, *values, *inputs) -> (out, *new values)`` on one leaf's state, stored back as it was.

  Float state is loaded in its arithmetic precision and cast back; quantized
  state is dequantized, stepped and requantized one chunk at a time
  (:func:`rmsprop_optax._quantize.map_moments`; ``chunked=False``: at once).
  A leaf's moments are all quantized or all float (``init`` decides per param);
  ``tables``: the quantized moments' lookup tables (:func:`state_tables`);
  ``inputs``: arrays of ``x``'s shape that ``fn`` only reads (chunk by chunk).
  """
  quantized = [s for s in stored if isinstance(s, _quantize.QuantizedArray)]
  if quantized:
    assert len(quantized) == len(stored)
    out, new_codes = _quantize.map_moments(fn, x, quantized, tables, chunked=chunked, inputs=inputs)
    return out, [*new_codes]
  out, *new = fn(x, *[load(s) for s in stored], *inputs)
  return out, [store(v, s) for v, s in zip(new, stored)]


def step_leaves(
  step: Any,
  xs: list[jax.Array],
  stored: list[list[StateLeaf]],
  inputs: list[list[jax.Array | None]],
) -> list[tuple[jax.Array, list[StateLeaf]]]:
  """``step(x, stored, inputs) -> (out, new stored)`` for every leaf, small quantized ones together.

  ``step`` is one leaf's step (it calls :func:`step_leaf`); ``stored`` and
  ``inputs`` hold each leaf's moments and its other per-element arrays (or
  None). Small leaves with quantized state are joined into one leaf, stepped
  once and split again (:func:`rmsprop_optax._quantize.leaf_groups`), which
  compiles into a few kernels instead of a few per leaf; the results are the
  same (one exception: :func:`rmsprop_optax._quantize.leaf_groups`). Each
  group is joined after the group before it is stepped, so the step holds
  one group's joined copies at a time (:func:`rmsprop_optax._quantize.join`).
  """
  results: list[Any] = [None] * len(xs)
  previous: jax.Array | None = None  # the joined output of the group stepped last
  for members in _quantize.leaf_groups(xs, stored, inputs):
    if len(members) == 1:
      (i,) = members
      results[i] = step(xs[i], stored[i], inputs[i])
      continue
    # leaf_groups joins only leaves whose moments are all quantized.
    moments = [cast(list[_quantize.QuantizedArray], stored[i]) for i in members]
    parts = ([xs[i] for i in members], moments)
    out, new = step(*_quantize.join(*parts, [inputs[i] for i in members], after=previous))
    previous = out
    for i, result in zip(members, _quantize.split(out, new, *parts), strict=True):
      results[i] = result
  return results


def state_tables(tree: Any) -> _quantize.Tables | None:
  """The lookup tables of a quantized state tree, as arrays made once per step; else None."""
  if not isinstance(tree, _quantize.QuantizedTree):
    return None
  spec = tree.spec
  return _quantize.lookup_tables(
    spec.bits,
    tree.signed,
    unsigned_zero=bool(spec.unsigned_zero),
    rounding=spec.rounding,
    map=spec.map,
  )


def state_leaves(tree: Any, treedef: Any) -> list[StateLeaf]:
  """A state tree's entries, one per leaf of ``treedef`` (the updates' structure)."""
  if isinstance(tree, _quantize.QuantizedTree):
    return tree.leaves(treedef)
  return treedef.flatten_up_to(tree)


def state_tree(like: Any, treedef: Any, leaves: list[StateLeaf]) -> Any:
  """Inverse of :func:`state_leaves`: ``leaves`` stored in a tree of ``like``'s kind."""
  if isinstance(like, _quantize.QuantizedTree):
    return like.replace_leaves(treedef, leaves)
  return treedef.unflatten(leaves)


def load_tree(tree: optax.Params | _quantize.QuantizedTree) -> optax.Params:
  """A whole state tree as arrays in their arithmetic precision (full size: for inspection)."""
  if isinstance(tree, _quantize.QuantizedTree):
    return tree.dequantize()
  return jax.tree.map(load, tree)


def widen(updates: optax.Updates) -> optax.Updates:
  """Gradients in at least float32, for a chain that rounds once at the end."""
  return jax.tree.map(lambda g: g.astype(compute_dtype(g.dtype)), updates)
