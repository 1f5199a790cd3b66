r"""Reddi, Kale and Kumar's online convex counterexample, run with this library.

"On the Convergence of Adam and Beyond" (ICLR 2018, Theorem 1): on
``x in [-1, 1]`` the losses are linear, ``f_t(x) = C x`` once every three
steps (``t mod 3 == 1``, t = 1, 2, ...) and ``f_t(x) = -x`` otherwise, with
``C > 2``. Over any three steps the sum is ``(C - 2) x``, so the best fixed
point is ``x = -1``; but RMSprop with a small constant decay sees the rare
large gradient ``C`` shrink its step (``nu`` jumps) while the frequent ``-1``
gradients push it up with large steps, and it drifts to ``x = +1``, the worst
point, with regret growing linearly in ``T``.

:func:`play` plays it with :func:`rmsprop_optax.scale_by_rms` (a constant,
array or scheduled decay), the learning rate ``alpha / sqrt(t)`` of the
paper, and a projection (clip) onto [-1, 1] after each step, in one
``jax.lax.scan``; ``jax.vmap`` over ``decay`` and ``c`` gives phase diagrams.
Use float64 (``jax.enable_x64``) for results that do not depend on rounding.
These are the helpers of ``notebooks/07_convergence.ipynb``, not a demo of the
``python -m rmsprop_optax demo`` command (there is no ``run``).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import rmsprop_optax
from rmsprop_optax import schedules


def gradients(c: Any, steps: int) -> jax.Array:
  """The gradients ``g_1, ..., g_steps``: ``c`` where ``t mod 3 == 1``, else -1.

  Examples:
    >>> from rmsprop_optax.demos import online_convex
    >>> print(online_convex.gradients(2.5, 6))
    [ 2.5 -1.  -1.   2.5 -1.  -1. ]
  """
  t = jnp.arange(1, steps + 1)
  c = jnp.asarray(c, dtype=float)
  return jnp.where(t % 3 == 1, c, -jnp.ones_like(c))


def play(
  decay: optax.ScalarOrSchedule,
  c: Any,
  *,
  steps: int,
  learning_rate: float = 0.5,
  lr_exponent: float = 0.5,
  eps: float = 1e-8,
  x0: float = 1.0,
) -> jax.Array:
  """Plays the counterexample with RMSprop; returns ``x_1, ..., x_{steps+1}``.

  Per step: ``u = scale_by_rms(decay, eps)(g_t)``, ``x <- clip(x - lr_t u,
  -1, 1)`` with ``lr_t = learning_rate / t**lr_exponent``
  (:func:`rmsprop_optax.schedules.inverse_power_learning_rate`; the paper's
  ``1 / sqrt(t)`` by default). ``x_t`` is
  the point played at step ``t`` (before seeing ``g_t``); the last entry is
  the point after the last step.

  Args:
    decay: a float, an array (traced: ``jax.vmap`` over it) or a schedule.
    c: the large gradient ``C`` (> 2 for ``x = -1`` to be the optimum).
    steps: ``T``.
    learning_rate: ``alpha``.
    lr_exponent: ``s`` in ``alpha / t**s``.
    eps: ``scale_by_rms``'s eps.
    x0: ``x_1``; Reddi et al. start at 1.

  Returns:
    A float array of shape ``(steps + 1,)`` (float64 under x64).

  Examples:
    >>> import jax
    >>> from rmsprop_optax import schedules
    >>> from rmsprop_optax.demos import online_convex
    >>> with jax.enable_x64(True):
    ...   small = online_convex.play(0.1, 2.5, steps=3001)[-1]
    ...   rising = online_convex.play(schedules.power_decay(1.0), 2.5, steps=3001)[-1]
    >>> print(round(float(small), 2), round(float(rising), 2))  # worst point, best point
    0.99 -1.0
  """
  tx = optax.chain(
    rmsprop_optax.scale_by_rms(decay=decay, eps=eps),
    optax.scale_by_learning_rate(schedules.inverse_power_learning_rate(learning_rate, lr_exponent)),
  )
  g = gradients(c, steps)
  x = jnp.asarray(x0, dtype=g.dtype)

  def step(carry: Any, g_t: jax.Array) -> tuple[Any, jax.Array]:
    x, state = carry
    u, state = tx.update(g_t, state)
    return (jnp.clip(x + u, -1, 1), state), x

  (x_last, _), played = jax.lax.scan(step, (x, tx.init(x)), g)
  return jnp.append(played, x_last)


def regret(xs: jax.Array, c: Any) -> jax.Array:
  """Cumulative regret ``R_t = sum_{k<=t} f_k(x_k) - f_k(-1)`` against ``x = -1``.

  ``x = -1`` is the best fixed point for every ``T`` when ``C > 2``. The
  losses are linear, so ``f_k(x_k) - f_k(-1) = g_k (x_k + 1)``.

  Args:
    xs: the points played, ``x_1, ..., x_T`` (``play(...)[:-1]``).
    c: ``C``.

  Returns:
    ``R_1, ..., R_T``.

  Examples:
    >>> import jax.numpy as jnp
    >>> from rmsprop_optax.demos import online_convex
    >>> # Always at +1: (C - 2) * 2 per three steps.
    >>> print(online_convex.regret(jnp.ones(6), 2.5))
    [5. 3. 1. 6. 4. 2.]
  """
  g = gradients(c, xs.shape[-1])
  return jnp.cumsum(g * (xs + 1), axis=-1)


def regret_slope(r: Any, *, start: float = 0.1) -> float:
  """Slope of ``log(R_T / T)`` against ``log T`` over the last ``T`` from ``start * T``.

  About 0 when the regret grows linearly (no convergence), -1 when it stays
  bounded, -0.5 for ``R_T ~ sqrt(T)``. Only ``T`` with ``R_T > 0`` enter the fit.

  Args:
    r: ``R_1, ..., R_T`` from :func:`regret`.
    start: the fit uses ``T`` from ``start * len(r)`` on.

  Returns:
    The least-squares slope (NaN if fewer than two points are usable).

  Examples:
    >>> import numpy as np
    >>> from rmsprop_optax.demos import online_convex
    >>> t = np.arange(1, 1001)
    >>> print(round(online_convex.regret_slope(3 * np.sqrt(t)), 6))
    -0.5
  """
  r = np.asarray(r, dtype=np.float64)
  t = np.arange(1, r.shape[-1] + 1, dtype=np.float64)
  keep = (t >= start * t[-1]) & (r > 0)
  if keep.sum() < 2:
    return float('nan')
  slope, _ = np.polyfit(np.log(t[keep]), np.log(r[keep] / t[keep]), 1)
  return float(slope)


def final_x_grid(cs: Any, decays: Any, *, steps: int, **kwargs: Any) -> jax.Array:
  """Final ``x`` for every ``(C, constant decay)``: shape ``(len(cs), len(decays))``.

  One compiled ``scan`` over the whole grid (``jax.vmap`` over both axes);
  ``kwargs`` go to :func:`play`.

  Examples:
    >>> import jax
    >>> from rmsprop_optax.demos import online_convex
    >>> with jax.enable_x64(True):
    ...   grid = online_convex.final_x_grid([2.5], [0.1, 0.99], steps=3001)
    >>> print(grid.round(2))  # +1 (the worst point) and -1 (the best)
    [[ 0.99 -1.  ]]
  """
  cs = jnp.asarray(cs, dtype=float)
  decays = jnp.asarray(decays, dtype=float)
  one = lambda c, d: play(d, c, steps=steps, **kwargs)[-1]
  return jax.vmap(lambda c: jax.vmap(lambda d: one(c, d))(decays))(cs)


def cycle_drift(decay: Any, c: Any) -> np.ndarray:
  """Net move of ``x`` per three-step cycle, in units of the step size, once ``nu`` is periodic.

  With a constant decay ``b`` and the learning rate nearly constant over a
  cycle, ``nu`` settles into a period-3 cycle: after the ``C`` step
  ``a = (b (1 + b) + C**2) / (1 + b + b**2)``, then ``b a + 1 - b`` and
  ``b (b a + 1 - b) + 1 - b`` after the two ``-1`` steps. The move is
  ``-C / sqrt(a) + 1 / sqrt(nu_2) + 1 / sqrt(nu_3)`` (``eps`` neglected):
  positive drifts to ``x = +1`` (the worst point), negative to ``x = -1``.
  Decay 0 gives ``+1``; as the decay goes to 1 it tends to
  ``(2 - C) / sqrt((C**2 + 2) / 3) < 0``.

  Examples:
    >>> from rmsprop_optax.demos import online_convex
    >>> print(online_convex.cycle_drift([0.0, 0.5], 2.5).round(4))
    [1.     0.1384]
  """
  b = np.asarray(decay, dtype=np.float64)
  c = np.asarray(c, dtype=np.float64)
  a = (b * (1 + b) + c**2) / (1 + b + b**2)
  nu2 = b * a + 1 - b
  nu3 = b * nu2 + 1 - b
  return -c / np.sqrt(a) + 1 / np.sqrt(nu2) + 1 / np.sqrt(nu3)


def critical_decay(c: float, *, tol: float = 1e-12) -> float:
  """The constant decay where :func:`cycle_drift` changes sign (``C > 2``), by bisection.

  Below it RMSprop with ``alpha / sqrt(t)`` ends at ``x = +1``, above it at
  ``x = -1``: the problem-dependent threshold that Shi et al. ("RMSprop
  converges with proper hyper-parameter", ICLR 2021) predict exists.

  Examples:
    >>> from rmsprop_optax.demos import online_convex
    >>> print(round(online_convex.critical_decay(2.5), 4))
    0.6292
  """
  if not c > 2:
    raise ValueError(f'`c` must be > 2 (x = -1 is the optimum only then), got {c!r}')
  lo, hi = 0.0, 1.0
  while hi - lo > tol:
    mid = 0.5 * (lo + hi)
    if cycle_drift(mid, c) > 0:
      lo = mid
    else:
      hi = mid
  return 0.5 * (lo + hi)
