r"""Decay and learning-rate schedules for which RMSprop provably converges.

With a constant ``decay`` RMSprop can converge to the worst point of a convex
problem (Reddi, Kale and Kumar, "On the Convergence of Adam and Beyond", ICLR
2018, Theorem 1; ``notebooks/07_convergence.ipynb`` runs their example). Letting
the decay rise towards 1 fixes it. Both schedules here are Optax schedules
``step -> value``, read with the count before the increment (step 0 for the
first update), so with ``t = step + 1`` (t = 1, 2, ...):

.. math::

  \rho_t = 1 - \theta\, t^{-r} \quad \text{(power_decay(r, theta))}, \qquad
  \alpha_t = \alpha\, t^{-s} \quad \text{(inverse_power_learning_rate(alpha, s))}

- ``power_decay(1.0)``: ``rho_t = 1 - 1/t``, so ``nu_t`` is the plain mean of
  ``g_1**2, ..., g_t**2`` (AdaGrad's accumulator divided by ``t``; Reddi et
  al.'s "AdamNC" setting ``beta_2t = 1 - 1/t``).
- ``power_decay(0.8)``: Adafactor's ``1 - t**-0.8`` (Shazeer and Stern,
  "Adafactor: Adaptive Learning Rates with Sublinear Memory Cost", ICML 2018).
- ``power_decay(r, theta)`` with ``inverse_power_learning_rate(alpha, s)`` is
  the family ``theta_t = 1 - theta / t**r``, ``alpha_t = alpha / t**s`` that
  Zou, Shen, Jie, Zhang and Liu, "A Sufficient Condition for Convergences of
  Adam and RMSProp", CVPR 2019 (arXiv:1811.09358), discuss;
  :func:`zou_condition` checks a summary of their condition for it (see its
  docstring for what of the paper was and was not checked).

With ``scale = 1`` the first decay is 0, so ``nu_1 = g_1**2`` exactly: the
moment is unbiased from the first step and needs no bias correction (which,
for a scheduled decay, ``scale_by_rms`` rejects).

The step is converted to the widest enabled float before the power
(``float64`` under ``jax_enable_x64``, else ``float32``): an integer count is
never raised to a fractional power, and a saturated int32 count (2**31 - 1)
still gives ``t = 2**31``.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

__all__ = (
  'ZouCondition',
  'inverse_power_learning_rate',
  'power_decay',
  'zou_condition',
)


def _number(name: str, value: Any) -> float:
  """``value`` as a Python float, or a ``ValueError`` naming ``name``."""
  arr = None if isinstance(value, (bool, np.bool_)) else np.asarray(value) if _real(value) else None
  if arr is None or arr.ndim != 0 or not np.issubdtype(arr.dtype, np.number):
    raise ValueError(f'`{name}` must be a real number, got {value!r}')
  if np.issubdtype(arr.dtype, np.complexfloating):
    raise ValueError(f'`{name}` must be a real number, got {value!r}')
  v = float(arr)
  if not math.isfinite(v):
    raise ValueError(f'`{name}` must be finite, got {value!r}')
  return v


def _real(value: Any) -> bool:
  return isinstance(value, (numbers.Number, np.generic, np.ndarray, jax.Array))


def _in_unit_interval(name: str, value: Any) -> float:
  """``value`` in (0, 1], or a ``ValueError`` naming ``name`` and the value."""
  v = _number(name, value)
  if not 0.0 < v <= 1.0:
    raise ValueError(f'`{name}` must satisfy 0 < {name} <= 1, got {value!r}')
  return v


def _time(step: chex.Numeric) -> jax.Array:
  """``t = step + 1`` in the widest enabled float (float64 under x64)."""
  return jnp.asarray(step, dtype=float) + 1


def power_decay(exponent: float = 0.8, scale: float = 1.0) -> optax.Schedule:
  r"""The decay schedule ``step -> 1 - scale * (step + 1) ** -exponent``, in [0, 1).

  .. math::

    \rho_t = 1 - \theta\, t^{-r}, \qquad t = \text{step} + 1 = 1, 2, \ldots

  with ``r = exponent`` and ``theta = scale``. The decay rises towards 1, so
  the average of squared gradients remembers more and more of the past:

  - ``power_decay(1.0)``: ``1 - 1/t``, the running mean of all squared
    gradients (AdaGrad-like; the "AdamNC" setting of Reddi, Kale and Kumar,
    "On the Convergence of Adam and Beyond", ICLR 2018).
  - ``power_decay(0.8)`` (the default): Adafactor's ``1 - t**-0.8`` (Shazeer
    and Stern, "Adafactor: Adaptive Learning Rates with Sublinear Memory
    Cost", ICML 2018).
  - ``power_decay(r, theta)``: ``theta_t = 1 - theta / t**r`` as in Zou, Shen,
    Jie, Zhang and Liu, "A Sufficient Condition for Convergences of Adam and
    RMSProp", CVPR 2019; see :func:`zou_condition`. (The range ``0 < r <= 1``
    is this function's, not a range taken from the paper.)

  The value is clipped to [0, 1): at a count past ``2**24`` float32 would
  round ``1 - t**-1`` to exactly 1, which would freeze ``nu``; the clip keeps
  it at the largest float below 1.

  Args:
    exponent: ``r``, in (0, 1]. Larger forgets faster at first and remembers
      more later; 1 averages all squared gradients equally.
    scale: ``theta``, in (0, 1]. 1 makes the first decay 0 (``nu_1 = g_1**2``);
      smaller values start from ``1 - scale``.

  Returns:
    An Optax schedule ``step -> decay`` for ``decay=`` of
    :func:`rmsprop_optax.rmsprop` or :func:`rmsprop_optax.scale_by_rms`
    (``step`` is the count before the increment: 0 for the first update).
    Its dtype is float64 under ``jax_enable_x64``, float32 otherwise.

  Raises:
    ValueError: for an ``exponent`` or ``scale`` outside (0, 1], NaN,
      infinite or not a real number; the message names the argument.

  Examples:
    >>> import jax, jax.numpy as jnp, rmsprop_optax
    >>> from rmsprop_optax import schedules
    >>> decay = schedules.power_decay(1.0)
    >>> print(decay(jnp.arange(4)))  # 1 - 1/t for t = 1, 2, 3, 4
    [0.         0.5        0.6666666  0.75      ]
    >>> print(schedules.power_decay(0.8)(9))  # 1 - 10**-0.8
    0.84151065
    >>> print(schedules.power_decay(0.5, scale=0.1)(0))  # 1 - scale at step 0
    0.9

    With ``power_decay(1.0)``, ``nu`` is the mean of the squared gradients:

    >>> tx = rmsprop_optax.scale_by_rms(decay=decay, eps=0.0)
    >>> state = tx.init(jnp.zeros(1))
    >>> for g in (3.0, 1.0, 2.0):
    ...   _, state = tx.update(jnp.array([g]), state)
    >>> print(state.nu)  # (9 + 1 + 4) / 3
    [4.6666665]
  """
  r = _in_unit_interval('exponent', exponent)
  theta = _in_unit_interval('scale', scale)

  def schedule(step: chex.Numeric) -> jax.Array:
    t = _time(step)
    below_one = jnp.nextafter(jnp.ones((), t.dtype), jnp.zeros((), t.dtype))
    return jnp.clip(1 - theta * t**-r, 0, below_one)

  return schedule


def inverse_power_learning_rate(learning_rate: float, exponent: float = 0.5) -> optax.Schedule:
  r"""The learning-rate schedule ``step -> learning_rate * (step + 1) ** -exponent``.

  .. math::

    \alpha_t = \alpha\, t^{-s}, \qquad t = \text{step} + 1 = 1, 2, \ldots

  ``exponent = 0.5`` is the ``alpha / sqrt(t)`` of the online convex analysis
  of Adam and AMSGrad (Reddi, Kale and Kumar, ICLR 2018); Zou et al. (CVPR
  2019) pair ``alpha_t = alpha / t**s`` with :func:`power_decay`, see
  :func:`zou_condition`.

  Args:
    learning_rate: ``alpha``, the rate of the first step; finite and > 0.
    exponent: ``s``, in (0, 1] (1 is the ``1/t`` of Robbins and Monro; past 1
      the steps sum to a finite distance).

  Returns:
    An Optax schedule ``step -> rate`` (float64 under ``jax_enable_x64``), for
    ``learning_rate=`` of :func:`rmsprop_optax.rmsprop` or
    ``optax.scale_by_learning_rate``.

  Raises:
    ValueError: for a ``learning_rate`` that is not a finite positive number,
      or an ``exponent`` outside (0, 1]; the message names the argument.

  Examples:
    >>> from rmsprop_optax import schedules
    >>> lr = schedules.inverse_power_learning_rate(0.1, exponent=0.5)
    >>> print(lr(0), lr(3))  # 0.1 / sqrt(1), 0.1 / sqrt(4)
    0.1 0.05
  """
  alpha = _number('learning_rate', learning_rate)
  if not alpha > 0:
    raise ValueError(f'`learning_rate` must be > 0, got {learning_rate!r}')
  s = _in_unit_interval('exponent', exponent)

  def schedule(step: chex.Numeric) -> jax.Array:
    return alpha * _time(step) ** -s

  return schedule


class ZouCondition(NamedTuple):
  """Each part of the sufficient condition (as summarized in :func:`zou_condition`).

  For ``decay_t = 1 - theta / t**r`` and ``lr_t = alpha / t**s`` (no momentum).
  ``holds`` is all three.
  """

  decay_non_decreasing: bool  # 0 <= decay_t < 1 and non-decreasing: 0 < theta <= 1, r >= 0.
  ratio_non_increasing: bool  # lr_t / sqrt(1 - decay_t) ~ t**(r/2 - s) non-increasing: r <= 2 s.
  bound_vanishes: bool  # sum_t lr_t sqrt(1 - decay_t) / (T lr_T) -> 0: r > 0 and s < 1.

  @property
  def holds(self) -> bool:
    return self.decay_non_decreasing and self.ratio_non_increasing and self.bound_vanishes


def zou_condition(decay_exponent: float, lr_exponent: float, scale: float = 1.0) -> ZouCondition:
  r"""A sufficient condition in the style of Zou et al. for ``1 - scale / t**r`` with ``alpha / t**s``.

  Source: Zou, Shen, Jie, Zhang and Liu, "A Sufficient Condition for
  Convergences of Adam and RMSProp", CVPR 2019, arXiv:1811.09358.

  **What of the paper was checked.** Only its abstract (CVF open-access page)
  and the opening of its introduction (arXiv:1811.09358) could be read when
  this was written; the sections with the condition, the theorem and the
  corollaries could not. Checked there: a generic Adam/RMSProp with a base
  learning rate ``alpha_t > 0`` that does not depend on the gradients and a
  second moment ``v_t`` that is a weighted combination of ``g_1**2, ...,
  g_t**2``; a sufficient condition for global convergence on non-convex
  stochastic problems that depends only on the base learning rate and those
  weights; and that it covers AdamNC and AdaEMA. **Not checked**: the exact
  statement below, its extra assumptions and constants, its theorem and
  corollary numbers, and whether the paper states a range for ``r`` and ``s``
  (no number is given here for that reason).

  The summary used here, for ``v_t = theta_t v_{t-1} + (1 - theta_t) g_t**2``
  and ``x_{t+1} = x_t - alpha_t g_t / sqrt(v_t + eps)`` (no momentum):

  1. ``0 <= theta_t < 1`` and ``theta_t`` non-decreasing in ``t``;
  2. ``chi_t = alpha_t / sqrt(1 - theta_t)`` non-increasing;
  3. ``sum_{t<=T} alpha_t sqrt(1 - theta_t) / (T alpha_T) -> 0``, the term that
     decides whether a bound of the form ``(C + C' sum_{t<=T} alpha_t
     sqrt(1 - theta_t)) / (T alpha_T)`` on the gradient norm goes to 0.

  For ``theta_t = 1 - theta / t**r`` and ``alpha_t = alpha / t**s`` each part
  is worked out here, not quoted: 1 holds for ``0 < theta <= 1`` and ``r >=
  0``; ``chi_t = (alpha / sqrt(theta)) t**(r/2 - s)`` is non-increasing iff
  ``r <= 2 s``; the ratio in 3 is of order ``T**(-r/2)`` (``s + r/2 < 1``),
  ``log T / T**(1 - s)`` (``s + r/2 = 1``) or ``T**(s - 1)`` (``s + r/2 >
  1``), so it vanishes iff ``r > 0`` and ``s < 1``. All three together:
  ``0 < r <= 2 s < 2``. A constant decay (``r = 0``) passes 1 and 2 with
  ``alpha / sqrt(t)`` but not 3: the bound then stays of order ``sqrt(1 -
  theta)``. ``scale = 1`` makes ``theta_1 = 0``, accepted in 1 (``1 - 1/t`` is
  the AdamNC setting). :func:`power_decay` only builds ``0 < r <= 1``; larger
  ``r`` are still answered here.

  Read the paper before relying on more than the yes/no answer. It is a
  *sufficient* condition for a non-convex bound: failing it does not mean
  divergence (``notebooks/07_convergence.ipynb`` shows where it holds and
  what actually happens on Reddi et al.'s convex counterexample).

  Args:
    decay_exponent: ``r`` of :func:`power_decay` (0 for a constant decay).
    lr_exponent: ``s`` of :func:`inverse_power_learning_rate` (0: constant).
    scale: ``theta`` of :func:`power_decay`.

  Returns:
    A :class:`ZouCondition`; ``.holds`` is the whole condition.

  Raises:
    ValueError: for an argument that is not a finite real number.

  Examples:
    >>> from rmsprop_optax import schedules
    >>> schedules.zou_condition(1.0, 0.5).holds  # AdamNC with alpha / sqrt(t)
    True
    >>> schedules.zou_condition(0.0, 0.5)  # constant decay: the bound stays
    ZouCondition(decay_non_decreasing=True, ratio_non_increasing=True, bound_vanishes=False)
    >>> schedules.zou_condition(1.0, 0.25).ratio_non_increasing  # r > 2 s
    False
  """
  r = _number('decay_exponent', decay_exponent)
  s = _number('lr_exponent', lr_exponent)
  theta = _number('scale', scale)
  return ZouCondition(
    decay_non_decreasing=r >= 0.0 and 0.0 < theta <= 1.0,
    ratio_non_increasing=r <= 2 * s,
    bound_vanishes=r > 0.0 and s < 1.0,
  )
