"""Tier 2: ``rmsprop(...)``, the learning rate, the sign, momentum and decay.

An ``optax.chain`` of Optax's own pieces around the tier-1 rescaling; only what
Optax lacks is written here: a momentum trace whose coefficient may be a
schedule and whose buffer follows the mixed-precision policy
(:mod:`rmsprop_optax._state`) and the params' sharding.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import optax

from rmsprop_optax import _checks, _quantize, _state, _transforms


class ScheduledTraceState(NamedTuple):
  """Momentum state when the momentum coefficient is a schedule."""

  count: chex.Array  # shape=(), dtype=jnp.int32; saturates at 2**31 - 1.
  trace: optax.Params


def _momentum(
  momentum: optax.ScalarOrSchedule,
  nesterov: bool,
  accumulator_dtype: _state.AccumulatorDtype,
  chunked: bool = True,
) -> optax.GradientTransformation:
  """``optax.trace`` with a schedulable coefficient and a buffer that follows the policy.

  ``optax.trace`` creates its buffer with ``zeros_like(params)``: bf16 for bf16
  params and unsharded under ``jit``. The update is Optax's own
  (``b = momentum * b + u``; Nesterov ``u + momentum * b``); the buffer is cast
  back to its dtype after each step so it never drifts. A scheduled
  coefficient needs its own step count (:class:`ScheduledTraceState`).
  ``chunked=False``: a quantized buffer is stepped whole.
  """
  scheduled = callable(momentum)
  trace_leaf = _transforms._trace_once_per_shape(
    _trace_leaf_impl, nesterov=nesterov, chunked=chunked
  )

  def init_fn(params: optax.Params) -> optax.TraceState | ScheduledTraceState:
    trace = _state.init_state(params, 0.0, accumulator_dtype, real=False)
    if scheduled:
      return ScheduledTraceState(count=jnp.zeros([], jnp.int32), trace=trace)
    return optax.TraceState(trace=trace)

  def update_fn(
    updates: optax.Updates,
    state: optax.TraceState | ScheduledTraceState,
    params: optax.Params | None = None,
  ) -> tuple[optax.Updates, optax.TraceState | ScheduledTraceState]:
    del params
    beta = momentum(state.count) if scheduled else momentum
    u, treedef = jax.tree.flatten(updates)
    stored = _state.state_leaves(state.trace, treedef)
    tables = _state.state_tables(state.trace)
    tables_arg = None if tables is None else [tables]
    results = _state.step_leaves(
      lambda u_i, buffer, _: trace_leaf(u_i, buffer, beta, tables_arg),
      u,
      [[b] for b in stored],
      [[] for _ in u],
    )
    out = jax.tree.unflatten(treedef, [r[0] for r in results])
    trace = _state.state_tree(state.trace, treedef, [r[1][0] for r in results])
    if scheduled:
      return out, ScheduledTraceState(count=optax.safe_increment(state.count), trace=trace)
    return out, optax.TraceState(trace=trace)

  return optax.GradientTransformation(init_fn, update_fn)


def _trace_values(
  u: jax.Array, b: jax.Array, beta: _transforms.Hyperparameter, nesterov: bool
) -> list[jax.Array]:
  """``optax.trace``'s update of one leaf: ``[out, new buffer]``."""
  out, new = optax.trace(decay=beta, nesterov=nesterov).update(u, optax.TraceState(trace=b))
  return [out, new.trace]


def _trace_leaf_impl(
  u: jax.Array,
  stored: list[_state.StateLeaf],
  beta: _transforms.Hyperparameter,
  tables: list[_quantize.Tables] | None,
  *,
  nesterov: bool,
  chunked: bool,
) -> tuple[jax.Array, list[_state.StateLeaf]]:
  """One leaf of the momentum buffer (``stored``: ``[buffer]``): ``(out, [new buffer])``.

  Quantized, it is stepped chunk by chunk.
  """
  return _state.step_leaf(
    lambda u, b: _trace_values(u, b, beta, nesterov), u, stored, tables, chunked=chunked
  )


def _state_only(tx: optax.GradientTransformation) -> optax.GradientTransformation:
  """``tx``'s state, advanced as ``tx`` advances it, and the updates passed through unchanged.

  ``tx``'s own updates are dropped, so under ``jit`` XLA computes none of them.
  """

  def update_fn(
    updates: optax.Updates, state: optax.OptState, params: optax.Params | None = None
  ) -> tuple[optax.Updates, optax.OptState]:
    return updates, tx.update(updates, state, params)[1]

  return optax.GradientTransformation(tx.init, update_fn)


def _times(a: optax.ScalarOrSchedule, b: optax.ScalarOrSchedule) -> optax.ScalarOrSchedule:
  """``a * b`` for numbers or schedules (a schedule if either is one)."""
  if not callable(a) and not callable(b):
    return a * b
  fa = a if callable(a) else (lambda count: a)
  fb = b if callable(b) else (lambda count: b)
  return lambda count: fa(count) * fb(count)


def _validate(
  learning_rate: optax.ScalarOrSchedule,
  momentum: optax.ScalarOrSchedule | None,
  nesterov: bool,
  weight_decay: optax.ScalarOrSchedule | None,
) -> None:
  _checks.check_range('learning_rate', learning_rate, low=0.0)
  if momentum is not None:
    _checks.check_range('momentum', momentum, low=0.0, high=1.0, high_inclusive=False)
  if nesterov and (momentum is None or _checks.is_python_zero(momentum)):
    raise ValueError(
      f'rmsprop: nesterov=True needs a nonzero `momentum`, got momentum={momentum!r}'
    )
  if weight_decay is not None:
    _checks.check_range('weight_decay', weight_decay, low=0.0)


def rmsprop(
  learning_rate: optax.ScalarOrSchedule,
  decay: optax.ScalarOrSchedule = 0.9,
  eps: jax.typing.ArrayLike = 1e-8,
  *,
  momentum: optax.ScalarOrSchedule | None = None,
  nesterov: bool = False,
  centered: bool = False,
  mean_decay: optax.ScalarOrSchedule | None = None,
  bias_correction: bool = False,
  eps_in_sqrt: bool = True,
  initial_scale: jax.typing.ArrayLike = 0.0,
  lr_in_momentum: bool = True,
  weight_decay: optax.ScalarOrSchedule | None = None,
  decoupled_weight_decay: bool = False,
  weight_decay_mask: optax.MaskOrFn = None,
  maximize: bool = False,
  accumulator_dtype: _state.AccumulatorDtype = None,
) -> optax.GradientTransformationExtraArgs:
  r"""RMSprop in every variant: momentum, Nesterov, centered, bias correction, decay.

  Per element, with ``lr = learning_rate(t - 1)`` (schedules read the count
  before the increment, as in Optax):

  1. ``maximize``: ``g = -g``.
  2. coupled L2 (``weight_decay`` given, not decoupled): ``g = g + wd * param``.
  3. ``s`` = :func:`scale_by_rms` or :func:`scale_by_centered_rms` of ``g``.
  4. momentum ``beta`` (``None`` or 0: no buffer):

     - ``lr_in_momentum=True`` (TF1, Keras, Optax): ``b = beta * b + lr * s``;
       ``out = b``, or with Nesterov ``out = lr * s + beta * b``.
     - ``lr_in_momentum=False`` (PyTorch): ``b = beta * b + s``;
       ``out = lr * b``, or with Nesterov ``out = lr * (s + beta * b)``.
     - no momentum: ``out = lr * s``.

  5. decoupled decay: ``out = out + lr * wd * param`` (Keras, timm).
  6. the update is ``-out``, so :func:`optax.apply_updates` descends.

  With a constant learning rate the two momentum placements agree; with a
  schedule they differ (the buffer remembers old learning rates only when the
  learning rate is inside it).

  Args:
    learning_rate: a float or an Optax schedule.
    decay: EMA decay of the squared gradients (float or schedule).
    eps: numerical stability term; see ``eps_in_sqrt``.
    momentum: heavy-ball coefficient in [0, 1) (float or schedule); ``None`` or
      0 keeps no buffer in the state.
    nesterov: Nesterov momentum (needs ``momentum``).
    centered: divide by the standard deviation (Graves 2013) instead of the RMS.
    mean_decay: EMA decay of the gradient mean when centered (default ``decay``).
    bias_correction: Adam-style bias correction of the moments (fixed decay only).
    eps_in_sqrt: ``sqrt(s + eps)`` (True: TF, Keras, Optax) or ``sqrt(s) + eps``
      (False: PyTorch).
    initial_scale: initial value of the squared-gradient average (TF1: 1).
    lr_in_momentum: where the learning rate goes; see step 4.
    weight_decay: decay coefficient (float or schedule). ``None`` (the
      default) or a Python 0 adds no decay step, so ``update`` needs no
      ``params``; this survives ``optax.inject_hyperparams``, which leaves
      ``None`` alone. Any other value, including a 0 that
      ``inject_hyperparams`` turns into an array, keeps the step (its
      coefficient can then be changed in the state) and ``update`` needs
      ``params``.
    decoupled_weight_decay: step 5 (``lr * wd * param``) instead of step 2.
    weight_decay_mask: a tree of bools, or a callable ``params -> tree``, that
      selects the leaves to decay (both forms of decay).
    maximize: ascend instead of descend.
    accumulator_dtype: dtype of every state buffer; ``None`` is float32 for
      16-bit float params and the param dtype otherwise.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs`. Its update needs
    ``params`` when there is a weight-decay step. Updates have the gradients'
    dtype. Find the RMS statistics in its state with
    :func:`rmsprop_optax.find_rms_state`.

  Raises:
    ValueError: at construction, naming the argument and the value, for a
      constant ``decay`` or ``mean_decay`` outside [0, 1], a negative ``eps``,
      ``learning_rate``, ``weight_decay`` or ``initial_scale``, a ``momentum``
      outside [0, 1), any of them NaN or infinite; ``nesterov`` without
      momentum; ``bias_correction`` with a scheduled decay or ``decay = 1``;
      ``mean_decay`` without ``centered``. In ``update``: gradients whose tree
      or shapes differ from the state's (naming the first mismatching path,
      e.g. ``['layer']['b']: updates has shape (5,), the state has shape
      (3,)``), and a weight-decay step without ``params``.
    TypeError: a string, bool, complex or ``None`` hyperparameter; in
      ``init``, an integer ``accumulator_dtype`` or a params leaf that is not an
      array (e.g. an Equinox model's functions: pass
      ``eqx.filter(model, eqx.is_array)``); in ``update``, integer, unsigned or
      boolean gradients (naming the path and dtype).

  NaN and infinite gradients are not an error: they propagate into the state
  (a NaN stays in ``nu``). Wrap the optimizer to skip such steps, e.g.
  ``optax.apply_if_finite(rmsprop_optax.rmsprop(1e-3), max_consecutive_errors=5)``,
  which leaves params and state bit-identical on a bad step.

  Examples:
    >>> import jax, jax.numpy as jnp, optax, rmsprop_optax
    >>> opt = rmsprop_optax.rmsprop(1e-2, momentum=0.9, centered=True)
    >>> params = {'w': jnp.ones(3)}
    >>> state = opt.init(params)
    >>> grads = jax.grad(lambda p: jnp.sum(p['w'] ** 2))(params)
    >>> updates, state = opt.update(grads, state, params)
    >>> params = optax.apply_updates(params, updates)

  .. warning::
    The defaults follow Optax (eps 1e-8 inside the root, lr inside the buffer).
    To reproduce PyTorch, Keras or TF1 exactly use :mod:`rmsprop_optax.presets`.
  """
  _validate(learning_rate, momentum, nesterov, weight_decay)
  has_momentum = momentum is not None and not _checks.is_python_zero(momentum)
  has_decay = weight_decay is not None and not _checks.is_python_zero(weight_decay)
  if not centered and mean_decay is not None:
    raise ValueError('rmsprop: `mean_decay` is only used with centered=True')

  # Quantized state is stepped in loops over chunks; the learning rate's
  # multiply between two of them would cost a full-size buffer, so the
  # rescaling applies it (the chain keeps the learning rate's own state).
  spec = accumulator_dtype if isinstance(accumulator_dtype, _quantize.Quantized) else None
  lr_into_rescale = has_momentum and lr_in_momentum and spec is not None
  # Likewise coupled decay's sum before the loop. (bitsandbytes adds the decay
  # with one rounding, torch's fused multiply-add; so does the chunk's fusion.)
  decay_into_rescale = has_decay and not decoupled_weight_decay and spec is not None
  # bitsandbytes' rounding of the second moment depends on how XLA fuses its
  # step (_quantize.bitsandbytes_ema_of_squares). Where bnb has the settings
  # (its RMSprop: no momentum, not centered, no bias correction) chunked and
  # whole steps agree with bnb and each other; with momentum, centering and
  # coupled decay together a chunk's fusion rounded it otherwise, so beyond
  # bnb's settings the leaf is stepped whole.
  chunk_bitsandbytes = not (has_momentum or centered or bias_correction)
  parts: list[optax.GradientTransformation] = []
  if maximize:
    parts.append(optax.scale(-1.0))
  if has_decay and not decoupled_weight_decay:
    coupled = optax.add_decayed_weights(weight_decay, weight_decay_mask)
    parts.append(_state_only(coupled) if decay_into_rescale else coupled)
  parts.append(
    _transforms._scale_by_rms(
      name='rmsprop',
      centered=centered,
      decay=decay,
      eps=eps,
      mean_decay=mean_decay,
      eps_in_sqrt=eps_in_sqrt,
      initial_scale=initial_scale,
      bias_correction=bias_correction,
      accumulator_dtype=accumulator_dtype,
      check_gradients=False,  # checked once, below, before anything can promote them
      learning_rate=learning_rate if lr_into_rescale else None,
      weight_decay=weight_decay if decay_into_rescale else None,
      weight_decay_mask=weight_decay_mask if decay_into_rescale else None,
      chunk_bitsandbytes=chunk_bitsandbytes,
    )
  )
  lr = optax.scale_by_learning_rate(learning_rate, flip_sign=False)
  if has_momentum:
    bnb = spec is not None and spec.rounding == 'bitsandbytes'
    trace = _momentum(momentum, nesterov, accumulator_dtype, chunked=not bnb)
    if lr_into_rescale:
      lr = _state_only(lr)
    parts += [lr, trace] if lr_in_momentum else [trace, lr]
  else:
    parts.append(lr)
  if has_decay and decoupled_weight_decay:
    parts.append(optax.add_decayed_weights(_times(learning_rate, weight_decay), weight_decay_mask))
  parts.append(optax.scale(-1.0))
  chain = optax.chain(*parts)

  def update_fn(
    updates: optax.Updates,
    state: optax.OptState,
    params: optax.Params | None = None,
    **extra_args: Any,
  ) -> tuple[optax.Updates, optax.OptState]:
    del extra_args
    # Before maximize or coupled decay could promote integer gradients to float.
    _checks.check_float_updates(updates, 'rmsprop')
    if has_decay and params is None:
      raise ValueError(
        'rmsprop: `params` must be passed to update() when there is a weight-decay step '
        f'(weight_decay={weight_decay!r})'
      )
    out, state = chain.update(_state.widen(updates), state, params)
    return optax.tree.cast_like(out, updates), state

  return optax.GradientTransformationExtraArgs(chain.init, update_fn)
