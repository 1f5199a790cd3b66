"""Tier 1: transformations that only rescale (no learning rate, no sign).

Per element, with ``t`` the step count after the increment (1, 2, ...)::

  nu_t = decay * nu_{t-1} + (1 - decay) * |g_t|**2            nu_0 = initial_scale
  mu_t = md * mu_{t-1} + (1 - md) * g_t                        (centered only)
  s    = nu_t / (1 - decay**t)                                 (bias correction)
  s    = max(s - |mu_t / (1 - md**t)|**2, 0)                   (centered only)
  out  = g / sqrt(s + eps)      or      g / (sqrt(s) + eps)    (eps_in_sqrt)

and ``out = 0`` wherever the denominator is exactly zero (``eps = 0`` with a
zero second moment), never NaN. :func:`_rescale` is these lines for one leaf;
dtypes follow :mod:`rmsprop_optax._state`.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable
from typing import Any, NamedTuple, TypeAlias, TypeGuard, cast

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from rmsprop_optax import _checks, _quantize, _state
from rmsprop_optax._state import AccumulatorDtype, StateLeaf

# A hyperparameter inside the jitted per-leaf math, a schedule already read: a
# Python (or NumPy scalar) number, folded in as a compile-time constant, or a
# scalar tracer (an array argument is traced: see _trace_once_per_shape).
Hyperparameter: TypeAlias = float | jax.Array

# Below this a concrete eps may round to zero in float32 (or flush as a
# denormal), so the zero-denominator guard stays on.
_EPS_GUARD_BELOW = 1e-30


class ScaleByRmsState(NamedTuple):
  """State of :func:`scale_by_rms`."""

  count: chex.Array  # shape=(), dtype=jnp.int32; saturates at 2**31 - 1.
  nu: optax.Updates  # EMA of |g|**2, real dtype.


class ScaleByCenteredRmsState(NamedTuple):
  """State of :func:`scale_by_centered_rms`."""

  count: chex.Array  # shape=(), dtype=jnp.int32; saturates at 2**31 - 1.
  mu: optax.Updates  # EMA of g, the gradient's (real or complex) kind.
  nu: optax.Updates  # EMA of |g|**2, real dtype.


def scale_by_rms(
  decay: optax.ScalarOrSchedule = 0.9,
  eps: jax.typing.ArrayLike = 1e-8,
  *,
  eps_in_sqrt: bool = True,
  initial_scale: jax.typing.ArrayLike = 0.0,
  bias_correction: bool = False,
  accumulator_dtype: AccumulatorDtype = None,
) -> optax.GradientTransformation:
  r"""Rescales updates by the root of an EMA of their squares (RMSprop).

  .. math::

    \nu_t = \rho \nu_{t-1} + (1 - \rho) |g_t|^2, \quad
    \hat\nu_t = \nu_t / (1 - \rho^t) \ \text{(bias correction)}, \quad
    u_t = g_t / \sqrt{\hat\nu_t + \epsilon}
    \ \text{or}\ g_t / (\sqrt{\hat\nu_t} + \epsilon)

  Args:
    decay: ``rho``, the EMA decay of the squared gradients, in [0, 1]; a float,
      an array (``optax.inject_hyperparams``) or a schedule ``step -> decay``
      read with the count before the increment.
    eps: added to the second moment inside the square root
      (``eps_in_sqrt=True``: Keras, TF1, Optax) or to its root
      (``eps_in_sqrt=False``: PyTorch). ``eps = 0`` is allowed: an element
      whose second moment is zero then gets a zero update, not NaN.
    eps_in_sqrt: where ``eps`` goes; see above.
    initial_scale: ``nu_0``; 0 in PyTorch, Keras and Optax, 1 in TF1.
    bias_correction: divide ``nu`` by ``1 - decay**t`` (needs a fixed decay).
      The correction is computed as ``-expm1(t * log(decay))``, see the note.
    accumulator_dtype: dtype of ``nu``; ``None`` gives float32 for float16 and
      bfloat16 params and the param's own dtype otherwise.

  Returns:
    A :class:`optax.GradientTransformation` whose state is
    :class:`ScaleByRmsState` ``(count, nu)``. The output has the gradient's
    dtype; ``nu`` keeps its dtype across steps.

  Raises:
    ValueError: for a constant ``decay`` outside [0, 1], a negative ``eps`` or
      ``initial_scale``, or ``bias_correction`` with a scheduled decay; at
      trace time, for ``updates`` whose tree differs from the state's.
    TypeError: at trace time, for integer or boolean gradients.

  Examples:
    >>> import jax.numpy as jnp, optax, rmsprop_optax
    >>> tx = optax.chain(rmsprop_optax.scale_by_rms(0.9), optax.scale(-0.01))
    >>> state = tx.init(jnp.zeros(2))
    >>> updates, state = tx.update(jnp.array([1.0, 0.1]), state)
    >>> # nu = [0.1, 0.001], so both steps are about -0.01 * g / sqrt(nu) = -0.0316;
    >>> # the second is 5e-6 smaller because eps = 1e-8 is 1e-5 of its nu.
    >>> print(updates)
    [-0.03162277 -0.03162261]

  .. warning::
    PyTorch puts ``eps`` outside the square root, Keras and TF inside: with a
    large ``eps`` (Inception used 1.0) the two give very different steps.

  .. note::
    Bias correction: Optax computes ``1 - decay**t``, which cancels near
    ``decay = 1`` in float32 (``float32(1 - 1e-9)`` is 1.0, so the correction
    is 0 and the update NaN). Here it is ``-expm1(t * log(decay))``, with the
    log of a Python-number decay taken in float64: the float32 correction is
    within 2e-7 of the exact one at every ``t``, where Optax's form is off by
    up to 2e-5 at decay 0.999. The updates therefore differ from
    ``optax.scale_by_rms(decay, bias_correction=True)`` in float32 by up to
    1e-5 relative at decay 0.999 (1e-6 at 0.99, 4e-7 at 0.9); in float64 they
    agree to rounding (``tests/test_optax_ported.py`` checks both).
  """
  return _scale_by_rms(
    name='scale_by_rms',
    centered=False,
    decay=decay,
    eps=eps,
    mean_decay=None,
    eps_in_sqrt=eps_in_sqrt,
    initial_scale=initial_scale,
    bias_correction=bias_correction,
    accumulator_dtype=accumulator_dtype,
  )


def scale_by_centered_rms(
  decay: optax.ScalarOrSchedule = 0.9,
  eps: jax.typing.ArrayLike = 1e-8,
  *,
  mean_decay: optax.ScalarOrSchedule | None = None,
  eps_in_sqrt: bool = True,
  initial_scale: jax.typing.ArrayLike = 0.0,
  bias_correction: bool = False,
  accumulator_dtype: AccumulatorDtype = None,
) -> optax.GradientTransformation:
  r"""Rescales updates by the root of an EMA estimate of their variance.

  Centered RMSprop (Graves 2013) also tracks the gradient mean and divides by
  the standard deviation instead of the root mean square:

  .. math::

    \mu_t = \rho_m \mu_{t-1} + (1 - \rho_m) g_t, \quad
    \nu_t = \rho \nu_{t-1} + (1 - \rho) |g_t|^2, \quad
    s_t = \max(\hat\nu_t - |\hat\mu_t|^2, 0), \quad
    u_t = g_t / \sqrt{s_t + \epsilon}

  Args:
    decay: ``rho`` for the squared gradients (float, array or schedule).
    eps: see :func:`scale_by_rms`.
    mean_decay: ``rho_m`` for the gradient mean; ``None`` uses ``decay``.
    eps_in_sqrt: see :func:`scale_by_rms`.
    initial_scale: ``nu_0`` (``mu_0`` is always 0).
    bias_correction: divide ``nu`` by ``1 - decay**t`` and ``mu`` by
      ``1 - mean_decay**t``. At ``t = 1`` the variance estimate is then exactly
      0, so the first step is ``g / sqrt(eps)``: that is the math (Optax does
      the same), so use a meaningful ``eps`` or no bias correction.
    accumulator_dtype: dtype of ``mu`` and ``nu``; see :func:`scale_by_rms`.

  Returns:
    A :class:`optax.GradientTransformation` whose state is
    :class:`ScaleByCenteredRmsState` ``(count, mu, nu)``.

  Raises:
    ValueError, TypeError: as :func:`scale_by_rms`.

  .. note::
    The variance estimate ``nu - mu**2`` can round below zero in floating
    point; it is clamped at 0 (Optax does not clamp).
  """
  return _scale_by_rms(
    name='scale_by_centered_rms',
    centered=True,
    decay=decay,
    eps=eps,
    mean_decay=mean_decay,
    eps_in_sqrt=eps_in_sqrt,
    initial_scale=initial_scale,
    bias_correction=bias_correction,
    accumulator_dtype=accumulator_dtype,
  )


def _scale_by_rms(
  *,
  name: str,
  centered: bool,
  decay: optax.ScalarOrSchedule,
  eps: jax.typing.ArrayLike,
  mean_decay: optax.ScalarOrSchedule | None,
  eps_in_sqrt: bool,
  initial_scale: jax.typing.ArrayLike,
  bias_correction: bool,
  accumulator_dtype: AccumulatorDtype,
  check_gradients: bool = True,
  learning_rate: optax.ScalarOrSchedule | None = None,
  weight_decay: optax.ScalarOrSchedule | None = None,
  weight_decay_mask: Any = None,
  chunk_bitsandbytes: bool = True,
) -> optax.GradientTransformation:
  """Both transformations. ``check_gradients=False`` when the caller checked them.

  ``chunk_bitsandbytes=False``: quantized moments with bitsandbytes' rounding
  are stepped whole, not in chunks (see the :mod:`rmsprop_optax._quantize`
  docstring).

  ``weight_decay`` (and ``weight_decay_mask``, as ``optax.add_decayed_weights``
  takes them): add ``weight_decay * param`` to the gradient inside each leaf's
  step, as ``optax.add_decayed_weights`` would before it (read at the same
  count), for :func:`rmsprop_optax.rmsprop` with quantized state and coupled
  decay: the sum made before the chunked loop would be a full-size buffer of
  its own (its input), beside the gradient's.

  ``learning_rate``: multiply the output by it inside each leaf's step, as
  ``optax.scale_by_learning_rate`` would after it (read at the same count), for
  :func:`rmsprop_optax.rmsprop` with quantized state and the learning rate in
  the momentum buffer: the product then comes out of the chunked loop, where an
  elementwise multiply between that loop and the momentum buffer's would get a
  full-size buffer of its own from XLA.
  """
  _validate(name, decay, eps, mean_decay, bias_correction, initial_scale)
  if mean_decay is None:
    mean_decay = decay
  rescale = _trace_once_per_shape(
    _rescale,
    chunk_bitsandbytes=chunk_bitsandbytes,
    eps_in_sqrt=eps_in_sqrt,
    zero_guard=_needs_zero_guard(eps),
    # With zero initial moments, the bias-corrected variance at t = 1 is 0.
    first_variance_zero=(
      centered and bias_correction and _checks.concrete_value(initial_scale) == 0.0
    ),
  )

  def init_fn(params: optax.Params) -> ScaleByRmsState | ScaleByCenteredRmsState:
    _checks.check_array_leaves(params, name)
    count = jnp.zeros([], jnp.int32)
    nu = _state.init_state(params, initial_scale, accumulator_dtype, real=True)
    if not centered:
      return ScaleByRmsState(count=count, nu=nu)
    mu = _state.init_state(params, 0.0, accumulator_dtype, real=False)
    return ScaleByCenteredRmsState(count=count, mu=mu, nu=nu)

  def update_fn(
    updates: optax.Updates,
    state: ScaleByRmsState | ScaleByCenteredRmsState,
    params: optax.Params | None = None,
  ) -> tuple[optax.Updates, ScaleByRmsState | ScaleByCenteredRmsState]:
    if check_gradients:
      _checks.check_float_updates(updates, name)
    _checks.check_updates_match_state(updates, state.nu, name)
    # Schedules are read with the count before the increment, as in Optax.
    d = decay(state.count) if callable(decay) else decay
    md = mean_decay(state.count) if callable(mean_decay) else mean_decay
    lr = learning_rate(state.count) if callable(learning_rate) else learning_rate
    count = optax.safe_increment(state.count)
    t = count if bias_correction else None
    wd = weight_decay(state.count) if callable(weight_decay) else weight_decay

    # init_fn made a ScaleByCenteredRmsState when centered.
    mu_state = cast(ScaleByCenteredRmsState, state).mu if centered else None
    g, treedef = jax.tree.flatten(updates)
    # Each leaf's moments: [nu], or [nu, mu] when centered.
    stored = [[nu] for nu in _state.state_leaves(state.nu, treedef)]
    if centered:
      for moments, mu in zip(stored, _state.state_leaves(mu_state, treedef), strict=True):
        moments.append(mu)
    # Passed to every leaf's function as arguments, not made inside each.
    tables = [_state.state_tables(state.nu)]
    if centered:
      tables.append(_state.state_tables(mu_state))
    tables_arg = None if tables[0] is None else tables
    decayed = _decayed_params(updates, params, weight_decay_mask, treedef, wd is not None)

    def step(
      g_i: jax.Array, stored: list[_state.StateLeaf], inputs: list[jax.Array | None]
    ) -> tuple[jax.Array, list[_state.StateLeaf]]:
      (p_i,) = inputs
      wd_i = None if p_i is None else wd
      return rescale(g_i, stored, d, md, eps, t, lr, tables_arg, p_i, wd_i)

    results = _state.step_leaves(step, g, stored, [[p_i] for p_i in decayed])
    out = jax.tree.unflatten(treedef, [r[0] for r in results])
    new_nu = _state.state_tree(state.nu, treedef, [r[1][0] for r in results])
    if not centered:
      return out, ScaleByRmsState(count=count, nu=new_nu)
    new_mu = _state.state_tree(mu_state, treedef, [r[1][1] for r in results])
    return out, ScaleByCenteredRmsState(count=count, mu=new_mu, nu=new_nu)

  return optax.GradientTransformation(init_fn, update_fn)


def _decayed_params(
  updates: optax.Updates, params: optax.Params | None, mask: Any, treedef: Any, decay: bool
) -> list[jax.Array | None]:
  """Per leaf, the param that ``optax.add_decayed_weights(wd, mask)`` would add, or None.

  ``mask`` as ``optax.masked`` reads it: a tree of bools with the updates'
  structure or a prefix of it, or a callable of the updates returning one.
  """
  if not decay:
    return [None] * treedef.num_leaves
  if params is None:
    raise ValueError('weight decay needs the params: pass them to update()')
  keep = [True] * treedef.num_leaves
  if mask is not None:
    mask_tree = mask(updates) if callable(mask) else mask
    flags = jax.tree.map(lambda m, sub: jax.tree.map(lambda _: bool(m), sub), mask_tree, updates)
    keep = treedef.flatten_up_to(flags)
  return [p if k else None for p, k in zip(treedef.flatten_up_to(params), keep, strict=True)]


def _rescale(
  g: jax.Array,
  stored: list[StateLeaf],
  decay: Hyperparameter,
  mean_decay: Hyperparameter,
  eps: Hyperparameter,
  t: jax.Array | None,
  learning_rate: Hyperparameter,
  tables: list[_quantize.Tables] | None,
  param: jax.Array | None,
  weight_decay: Hyperparameter | None,
  *,
  chunk_bitsandbytes: bool,
  **options: bool,
) -> tuple[jax.Array, list[StateLeaf]]:
  """One leaf: ``(out, [new nu, new mu])``; ``stored``: ``[nu]``, or ``[nu, mu]`` when centered.

  ``t``: the count when bias-correcting, else None; ``learning_rate``: None, or a factor of ``out`` (see :func:`_scale_by_rms`);
  ``tables``: the quantized moments' lookup tables, or None for float state;
  ``param`` and ``weight_decay``: None, or coupled decay added to ``g`` first.

  :func:`_rescale_values` on the loaded moments; quantized moments are
  stepped chunk by chunk (:func:`rmsprop_optax._state.step_leaf`), so the
  step never holds a full-size float32 copy of one.
  """
  # bitsandbytes' rounding of the second moment (its parity mode).
  bnb = _quantize.is_bitsandbytes(stored[0])

  def values(g: jax.Array, *args: jax.Array) -> tuple[jax.Array, ...]:
    moments, inputs = args[: len(stored)], args[len(stored) :]
    if inputs:
      # optax.add_decayed_weights' sum, on this chunk.
      assert weight_decay is not None
      g = g + weight_decay * inputs[0]
    nu_v, mu_v = moments if len(moments) == 2 else (moments[0], None)
    out, new_nu, new_mu = _rescale_values(
      g, nu_v, mu_v, decay, mean_decay, eps, t, bitsandbytes=bnb, **options
    )
    if learning_rate is not None:
      # optax.scale_by_learning_rate's product, in the output's dtype.
      out = jnp.asarray(learning_rate, out.dtype) * out
    return (out, new_nu) if new_mu is None else (out, new_nu, new_mu)

  inputs = () if param is None else (param,)
  chunked = chunk_bitsandbytes or not bnb
  return _state.step_leaf(values, g, stored, tables, chunked=chunked, inputs=inputs)


def _rescale_values(
  g: jax.Array,
  nu: jax.Array,
  mu: jax.Array | None,
  decay: Hyperparameter,
  mean_decay: Hyperparameter,
  eps: Hyperparameter,
  t: jax.Array | None,
  *,
  eps_in_sqrt: bool,
  zero_guard: bool,
  first_variance_zero: bool,
  bitsandbytes: bool,
) -> tuple[jax.Array, jax.Array, jax.Array | None]:
  """The module docstring's equations on loaded moments: ``(out, new nu, new mu)``.

  ``out`` has ``g``'s dtype, the moments their arithmetic precision;
  ``bitsandbytes`` rounds the second moment's average as bitsandbytes does.
  """
  dtype = nu.dtype
  g_c = g.astype(jnp.promote_types(dtype, g.dtype) if jnp.iscomplexobj(g) else dtype)

  if bitsandbytes:
    new_nu = _quantize.bitsandbytes_ema_of_squares(decay, nu, g_c)
  else:
    new_nu = decay * nu + (1 - decay) * _abs_sq(g_c)
  # One scalar reciprocal, then a multiply per element: a divide per element
  # costs as much as the memory traffic of the whole step on CPU.
  s = new_nu if t is None else new_nu * (1 / _bias_correction(decay, t, dtype))

  new_mu = None
  if mu is not None:
    new_mu = mean_decay * mu + (1 - mean_decay) * g_c
    mu_hat = new_mu
    if t is not None:
      mu_hat = new_mu * (1 / _bias_correction(mean_decay, t, jnp.finfo(mu.dtype).dtype))
    # A variance estimate can round below zero; never take the root of a negative.
    s = jnp.maximum(s - _abs_sq(mu_hat), 0)
    if first_variance_zero:
      # At t = 1, nu_hat = |g|^2 and mu_hat = g exactly, so the variance is 0
      # and the first step is g / sqrt(eps); computed, it is rounding noise of
      # order 1e-7 g^2 in float32 that would dominate a small eps (9x off at
      # eps 1e-8) and depend on how XLA fuses the step.
      s = jnp.where(t == 1, jnp.zeros_like(s), s)

  if eps_in_sqrt:
    # g * rsqrt(s + eps), as Optax: one reciprocal square root per element
    # instead of a square root and a divide.
    denom = s + eps
  else:
    # PyTorch's form, kept as a divide: g / (sqrt(s) + eps).
    denom = jnp.sqrt(s) + eps
  if zero_guard:
    # eps = 0 and a zero second moment: 0, not 0 / 0
    # (https://github.com/google-deepmind/optax/pull/1553).
    nonzero = denom > 0
    denom = jnp.where(nonzero, denom, 1)
  out = g_c * jax.lax.rsqrt(denom) if eps_in_sqrt else g_c / denom
  if zero_guard:
    out = jnp.where(nonzero, out, 0)
  return out.astype(g.dtype), new_nu, new_mu


def _abs_sq(x: jax.Array) -> jax.Array:
  if jnp.iscomplexobj(x):
    return jnp.square(x.real) + jnp.square(x.imag)
  return jnp.square(x)


def _bias_correction(decay: Hyperparameter, t: jax.Array, dtype: jnp.dtype) -> jax.Array:
  """``1 - decay**t`` in ``dtype``, computed as ``-expm1(t * log(decay))``.

  Optax's ``1 - decay**t`` cancels near ``decay = 1``: in float32 it is off by
  2e-5 relative at decay 0.999, and a decay of ``1 - 1e-9`` rounds to 1.0,
  making the correction 0 (NaN updates forever). A Python-number decay has its
  log taken in float64 first. Finite (1) for a saturated count when decay < 1;
  decay 0 gives exactly 1.
  """
  if _is_python_number(decay):
    if decay == 0:
      return jnp.ones((), dtype)
    log_decay = jnp.asarray(math.log(decay), dtype)
  else:
    log_decay = jnp.log(jnp.asarray(decay, dtype))
  return -jnp.expm1(t.astype(dtype) * log_decay)


def _is_python_number(value: object) -> TypeGuard[float]:
  return isinstance(value, numbers.Real) and not isinstance(value, (np.ndarray, jax.Array))


def _needs_zero_guard(eps: jax.typing.ArrayLike) -> bool:
  value = _checks.concrete_value(eps)
  return value is None or value < _EPS_GUARD_BELOW


def _trace_once_per_shape(fn: Callable[..., Any], **options: Any) -> Callable[..., Any]:
  """``functools.partial(fn, **options)``, traced once per distinct leaf shape and dtype.

  Why: tracing the per-leaf math op by op dominates the trace time of a
  many-leaf step. Under an outer ``jit`` a nested ``jit`` is traced and lowered
  once per distinct (shape, dtype) and afterwards only bound, so a tree with
  repeated layer shapes pays once; XLA inlines the call before fusion, so the
  compiled step and its results are the same. It pays where shapes repeat, as
  in a stack of layers. Seconds with / without it, for a donated
  ``rmsprop(1e-3, momentum=0.9, centered=True)`` step on 500 leaves of shape
  ``(64 + k, 64)``, float32 or ``quantized(8)`` state (first ``jit`` in a fresh
  process, XLA:CPU on 2 cores shared with other jobs, median of 3)::

    leaves, state               trace + lower    XLA compile
    10 shapes x 50, float32     0.43 / 0.91      2.6 / 2.6
    10 shapes x 50, 8-bit       1.1 / 13.5       95 / 93
    500 shapes, float32         4.1 / 2.9        50 / 45
    500 shapes, 8-bit           35 / 53          435 / 377

  The 8-bit step with repeated shapes lowers to 1.8 MB of StableHLO instead
  of 18.5. XLA's compile times differ by less than they vary from run to run
  (80-140 s for one setting); all-distinct float32 shapes pay about 1 s of
  tracing for the nested calls.

  Python-number arguments stay static (compile-time constants, exactly as
  without the cache: ``1 - decay`` is formed in Python's float64); arrays and
  tracers (``inject_hyperparams``, schedules) are traced arguments.
  """
  options_key = tuple(sorted(options.items()))

  def call(*args: Any) -> Any:
    # The type is part of the key: 1 == 1.0 == True hash alike.
    static = tuple((i, type(a), a) for i, a in enumerate(args) if _is_python_number(a))
    dynamic = [None if _is_python_number(a) else a for a in args]
    return _jit_with_constants(fn, options_key, static)(*dynamic)

  return call


@functools.lru_cache(maxsize=256)
def _jit_with_constants(
  fn: Callable[..., Any], options: tuple[tuple[str, Any], ...], static: tuple[Any, ...]
) -> Callable[..., Any]:
  def with_constants(*dynamic: Any) -> Any:
    args = list(dynamic)
    for i, _, value in static:
      args[i] = value
    return fn(*args, **dict(options))

  return jax.jit(with_constants)


def _validate(
  name: str,
  decay: optax.ScalarOrSchedule,
  eps: jax.typing.ArrayLike,
  mean_decay: optax.ScalarOrSchedule | None,
  bias_correction: bool,
  initial_scale: jax.typing.ArrayLike,
) -> None:
  _checks.check_range('decay', decay, low=0.0, high=1.0)
  _checks.check_range('eps', eps, low=0.0)
  if mean_decay is not None:
    _checks.check_range('mean_decay', mean_decay, low=0.0, high=1.0)
  if callable(initial_scale):
    raise TypeError(f'{name}: `initial_scale` must be a number, not a schedule')
  _checks.check_range('initial_scale', initial_scale, low=0.0)
  if bias_correction:
    for arg, value in (('decay', decay), ('mean_decay', mean_decay)):
      if value is None:
        continue
      if callable(value):
        raise ValueError(
          f'{name}: bias_correction=True needs a fixed `{arg}` (the correction '
          f'1 - {arg}**t is only defined for a constant {arg}), got a schedule'
        )
      if _checks.concrete_value(value) == 1.0:
        raise ValueError(f'{name}: bias_correction=True with {arg}=1 divides by 1 - 1**t = 0')
  if _checks.concrete_value(decay) == 1.0 and _checks.concrete_value(initial_scale) == 0.0:
    # nu = decay * nu + (1 - decay) * g**2 never leaves its start at decay = 1.
    raise ValueError(
      f'{name}: decay=1 with initial_scale=0 keeps the squared-gradient average at 0 '
      'forever, so every step divides the gradient by sqrt(eps) (or eps) alone: with eps '
      '1e-8 inside the root, lr 1e-3 and a gradient of 0.5 move a parameter by 5.0; use a decay below 1 (0.9 is common; the schedule '
      'rmsprop_optax.power_decay rises towards 1 but stays below it), or a positive '
      'initial_scale (TF1 starts at 1.0) if a fixed denominator is what you want'
    )
