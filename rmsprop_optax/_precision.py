"""Mixed precision: the one place that decides every dtype.

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

from typing import TypeAlias

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
) -> optax.Params:
  """A state tree filled with ``value``: the params' shapes and sharding, the policy's dtypes.

  Outside ``jit`` ``jnp.full_like`` keeps a concrete array's sharding. Under
  ``jit`` a constant has no data dependence on the param, so XLA's sharding
  propagation leaves it replicated on Auto-axis meshes (what happens to
  ``optax.rmsprop``'s state). Selecting between two copies of ``value`` on a
  predicate computed from the param gives the propagation a path to follow and
  is exact for every input, NaN and inf included.
  """

  def fill(p: jax.Array) -> StateLeaf:
    if isinstance(accumulator_dtype, _quantize.Quantized):
      if jnp.issubdtype(jnp.result_type(p), jnp.complexfloating):
        raise TypeError(
          'accumulator_dtype=quantized(...) supports real params only, got a '
          f'{jnp.result_type(p)} param; use a float accumulator_dtype for complex params'
        )
      if _quantize.quantizable(p, accumulator_dtype):
        return _quantize.init(p, value, accumulator_dtype, signed=not real)
      dtype = jnp.dtype(jnp.float32)
    else:
      dtype = state_dtype(jnp.result_type(p), accumulator_dtype, real=real)
    if isinstance(p, jax.core.Tracer):
      return jnp.where(jnp.isnan(p), value, value).astype(dtype)
    return jnp.full_like(p, value, dtype=dtype)

  return jax.tree.map(fill, params)


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


def load_tree(tree: optax.Params) -> optax.Params:
  return jax.tree.map(load, tree, is_leaf=_quantize.is_quantized)


def store_tree(values: optax.Params, like: optax.Params) -> optax.Params:
  return jax.tree.map(store, values, like)


def widen(updates: optax.Updates) -> optax.Updates:
  """Gradients in at least float32, for a chain that rounds once at the end."""
  return jax.tree.map(lambda g: g.astype(compute_dtype(g.dtype)), updates)
