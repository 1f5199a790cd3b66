"""Diagnostics: memory length, the RMS state inside any optimizer, effective step size, memory."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple, TypeAlias

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from rmsprop_optax import _checks, _state
from rmsprop_optax._transforms import ScaleByCenteredRmsState, ScaleByRmsState

RmsState = ScaleByRmsState | ScaleByCenteredRmsState

# What :func:`step_memory` compiles for: a tree of arrays, or of their shapes
# and dtypes (and shardings), as ``jax.jit(...).lower`` takes.
ShapedTree: TypeAlias = (
  'jax.typing.ArrayLike | jax.ShapeDtypeStruct | Iterable[ShapedTree] | Mapping[Any, ShapedTree]'
)


def memory_length(decay: jax.typing.ArrayLike) -> float | jax.Array:
  """The effective memory of an EMA with this decay: ``1 / (1 - decay)`` steps.

  The weights ``(1 - decay) * decay**k`` of past squared gradients sum to 1 and
  have mean age ``decay / (1 - decay)``; ``1 / (1 - decay)`` is the usual
  rounded figure (decay 0.9: 10 steps; 0.99: 100). ``decay = 1`` gives ``inf``.

  Examples:
    >>> from rmsprop_optax.diagnostics import memory_length
    >>> memory_length(0.9)
    10.0...
    >>> round(memory_length(0.99))
    100
    >>> memory_length(1.0)
    inf

  Raises:
    ValueError: if a concrete ``decay`` is outside [0, 1].
  """
  _checks.check_range('decay', decay, low=0.0, high=1.0)
  value = _checks.concrete_value(decay)
  if value is not None:
    return float('inf') if value == 1.0 else 1.0 / (1.0 - value)
  return 1.0 / (1.0 - jnp.asarray(decay))


def find_rms_state(opt_state: optax.OptState) -> RmsState:
  """The first :class:`ScaleByRmsState` or :class:`ScaleByCenteredRmsState`.

  Searches chains, ``inject_hyperparams``, ``masked``, ``MultiSteps``,
  ``apply_if_finite`` and any other wrapper state, depth first in tree order.

  Examples:
    >>> import jax.numpy as jnp, optax, rmsprop_optax
    >>> from rmsprop_optax.diagnostics import find_rms_state
    >>> opt = optax.chain(optax.clip_by_global_norm(1.0), rmsprop_optax.rmsprop(1e-2, decay=0.9))
    >>> params = jnp.zeros(2)
    >>> _, state = opt.update(jnp.array([0.5, 0.1]), opt.init(params), params)
    >>> print(jnp.round(find_rms_state(state).nu, 6))  # 0.1 * g^2
    [0.025 0.001]

  Raises:
    ValueError: if there is none.
  """
  is_rms = lambda x: isinstance(x, (ScaleByRmsState, ScaleByCenteredRmsState))
  for leaf in jax.tree.leaves(opt_state, is_leaf=is_rms):
    if is_rms(leaf):
      return leaf
  raise ValueError(
    'find_rms_state: no ScaleByRmsState or ScaleByCenteredRmsState in this '
    'optimizer state; was it built with rmsprop_optax?'
  )


def effective_learning_rate(
  opt_state: optax.OptState,
  learning_rate: optax.ScalarOrSchedule,
  *,
  eps: jax.typing.ArrayLike,
  eps_in_sqrt: bool = True,
) -> chex.ArrayTree:
  """Per element, the step size RMSprop applies: ``lr / sqrt(s + eps)``.

  ``s`` is the raw second moment ``nu`` (centered: ``max(nu - |mu|**2, 0)``)
  from :func:`find_rms_state`; with ``eps_in_sqrt=False`` the result is
  ``lr / (sqrt(s) + eps)``. A schedule ``learning_rate`` is read at the
  state's count. Bias correction is not applied: pass the state of an
  optimizer without it, or divide ``nu`` yourself.

  Returns:
    A tree shaped like the params. Elements whose denominator is exactly zero
    (``eps = 0`` and no gradient seen) give ``inf``.

  Examples:
    After one step with gradients 0.5 and 0.1 (decay 0.9), ``nu`` is 0.025 and
    0.001: the coordinate with the smaller gradients gets the larger step size.

    >>> import jax.numpy as jnp, rmsprop_optax
    >>> from rmsprop_optax.diagnostics import effective_learning_rate
    >>> opt = rmsprop_optax.rmsprop(1e-2, decay=0.9, eps=1e-8)
    >>> params = jnp.zeros(2)
    >>> _, state = opt.update(jnp.array([0.5, 0.1]), opt.init(params), params)
    >>> print(jnp.round(effective_learning_rate(state, 1e-2, eps=1e-8), 4))
    [0.0632 0.3162]
  """
  state = find_rms_state(opt_state)
  lr = learning_rate(state.count) if callable(learning_rate) else learning_rate
  # Quantized state reads as the float32 values it stands for.
  state = state._replace(
    **{k: _state.load_tree(getattr(state, k)) for k in ('nu', 'mu') if hasattr(state, k)}
  )

  def one(nu: jax.Array, mu: jax.Array | None) -> jax.Array:
    s = nu if mu is None else jnp.maximum(nu - jnp.square(jnp.abs(mu)), 0)
    denom = jnp.sqrt(s + eps) if eps_in_sqrt else jnp.sqrt(s) + eps
    return lr / denom

  if isinstance(state, ScaleByCenteredRmsState):
    return jax.tree.map(one, state.nu, state.mu)
  return jax.tree.map(lambda nu: one(nu, None), state.nu)


class StepMemory(NamedTuple):
  """Bytes per device, from :func:`step_memory`."""

  state_bytes: int  # the optimizer state between steps
  argument_bytes: int  # what the step is given: params, state (and grads or the batch)
  temp_bytes: int  # XLA's temporaries during the step
  peak_bytes: int  # arguments + outputs not written over them + temporaries


def step_memory(
  opt: optax.GradientTransformation,
  params: ShapedTree,
  loss_fn: Callable[..., jax.Array] | None = None,
  *batch: ShapedTree,
) -> StepMemory:
  """How much memory ``opt``'s state and a training step take, before anything is allocated.

  Compiles (never runs) a jitted step whose params and state are donated,
  ``update`` then :func:`optax.apply_updates`, and reads XLA's
  ``memory_analysis()``. With ``loss_fn``, the step computes the gradient of
  ``loss_fn(params, *batch)`` itself, as a training step does; without it the
  gradients are an argument of the step, so the updates need a buffer of
  their own wherever XLA cannot fuse the update into the apply (quantized
  state: it is computed in a loop over chunks). Params may be arrays or
  ``jax.ShapeDtypeStruct`` s; with shardings the figures are per device, the
  state placed where ``jax.jit(opt.init)`` puts it.

  Args:
    opt: the optimizer.
    params: the params, or their shapes and dtypes (and shardings).
    loss_fn: ``loss_fn(params, *batch) -> scalar``, or None for a step that
      takes the gradients as an argument.
    *batch: the rest of ``loss_fn``'s arguments (arrays or shapes).

  Returns:
    A :class:`StepMemory` of per-device byte counts.

  Examples:
    >>> import jax, jax.numpy as jnp, rmsprop_optax
    >>> params = {'w': jax.ShapeDtypeStruct((4096, 4096), jnp.float32)}
    >>> x = jax.ShapeDtypeStruct((8, 4096), jnp.float32)
    >>> loss = lambda p, x: jnp.sum((x @ p['w']) ** 2)
    >>> q8 = rmsprop_optax.rmsprop(1e-3, accumulator_dtype=rmsprop_optax.quantized(8))
    >>> f32 = rmsprop_optax.step_memory(rmsprop_optax.rmsprop(1e-3), params, loss, x)
    >>> q = rmsprop_optax.step_memory(q8, params, loss, x)
    >>> f32.state_bytes, q.state_bytes  # 4 bytes an element; 1 byte and a scale per 256
    (67108868, 17039364)
    >>> print(f'{q.peak_bytes / f32.peak_bytes:.2f}')  # the step holds params, grads, state
    0.76
  """
  params = jax.tree.map(_abstract, params)
  init = jax.jit(opt.init).lower(params).compile()
  state = jax.tree.map(
    lambda s, sharding: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding),
    jax.eval_shape(opt.init, params),
    init.output_shardings,
  )

  def step(params: Any, state: Any, *rest: Any) -> tuple[Any, Any]:
    # rest: the gradients, or the batch the loss takes.
    grads = rest[0] if loss_fn is None else jax.grad(loss_fn)(params, *rest)
    updates, state = opt.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  args = (params,) if loss_fn is None else tuple(jax.tree.map(_abstract, batch))
  compiled = jax.jit(step, donate_argnums=(0, 1)).lower(params, state, *args).compile()
  m = compiled.memory_analysis()
  if m is None:
    raise NotImplementedError(f'step_memory: {jax.default_backend()} gives no memory analysis')
  return StepMemory(
    state_bytes=sum(_device_bytes(s) for s in jax.tree.leaves(state)),
    argument_bytes=int(m.argument_size_in_bytes),
    temp_bytes=int(m.temp_size_in_bytes),
    peak_bytes=int(
      m.argument_size_in_bytes
      + m.output_size_in_bytes
      - m.alias_size_in_bytes
      + m.temp_size_in_bytes
    ),
  )


def _device_bytes(s: jax.ShapeDtypeStruct) -> int:
  """Bytes of one device's shard of ``s`` (all of it without a sharding)."""
  shape = s.shape if s.sharding is None else s.sharding.shard_shape(s.shape)
  return int(np.prod(shape)) * jnp.dtype(s.dtype).itemsize


def _abstract(x: Any) -> jax.ShapeDtypeStruct:
  return jax.ShapeDtypeStruct(
    np.shape(x), jnp.result_type(x), sharding=getattr(x, 'sharding', None)
  )
