"""Two-dimensional test functions for watching optimizers move.

Each function takes a point ``p`` of shape ``(2,)`` (or a batch ``(..., 2)``
when evaluating a grid for contour plots) and returns a scalar per point.
Gradients come from :func:`jax.grad`; nothing here is hand-differentiated.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

LossFn = Callable[[jax.Array], jax.Array]


def quadratic(p: jax.Array, *, scale: float = 100.0) -> jax.Array:
  r"""The classic ill-conditioned bowl :math:`f(x, y) = x^2 + s\,y^2` (s = 100).

  The Hessian is ``diag(2, 2 s)``: condition number ``s``. Gradient descent
  with step ``lr`` is stable in ``y`` only for ``lr < 1 / s`` (the classic
  learning rate 0.01 is exactly the edge: ``y <- y - 0.01 * 200 y = -y``).

  Examples:
    >>> import jax.numpy as jnp
    >>> from rmsprop_optax.demos.functions import quadratic
    >>> float(quadratic(jnp.array([5.0, -2.0])))  # the classic start
    425.0
  """
  p = jnp.asarray(p)
  return p[..., 0] ** 2 + scale * p[..., 1] ** 2


def rosenbrock(p: jax.Array, *, a: float = 1.0, b: float = 100.0) -> jax.Array:
  r"""Rosenbrock's banana: :math:`f(x, y) = (a - x)^2 + b (y - x^2)^2`, minimum at ``(a, a^2)``.

  A narrow curved valley: steep across it (curvature ~ ``2 b``), nearly flat
  along it, so one learning rate cannot suit both directions.
  """
  p = jnp.asarray(p)
  x, y = p[..., 0], p[..., 1]
  return (a - x) ** 2 + b * (y - x**2) ** 2


class Problem(NamedTuple):
  """A loss of two variables with what a picture of it needs."""

  name: str
  fn: LossFn
  start: tuple[float, float]
  minimum: tuple[float, float]
  xlim: tuple[float, float]
  ylim: tuple[float, float]


# The classic setting: start (5, -2), minimum (0, 0).
QUADRATIC = Problem(
  name='x^2 + 100 y^2',
  fn=quadratic,
  start=(5.0, -2.0),
  minimum=(0.0, 0.0),
  xlim=(-6.0, 6.0),
  ylim=(-2.5, 2.5),
)

# A classic start on the far side of the valley (e.g. Nocedal & Wright use (-1.2, 1)).
ROSENBROCK = Problem(
  name='Rosenbrock',
  fn=rosenbrock,
  start=(-1.5, 2.0),
  minimum=(1.0, 1.0),
  xlim=(-2.0, 2.0),
  ylim=(-1.0, 3.0),
)


def gradient(fn: LossFn) -> Callable[[jax.Array], jax.Array]:
  """``jax.grad(fn)``: the gradient of a test function at one point."""
  return jax.grad(fn)


def grid(
  fn: LossFn,
  xlim: tuple[float, float],
  ylim: tuple[float, float],
  num: int = 200,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """``(X, Y, Z)`` with ``Z = fn`` on a ``num x num`` grid, for contour plots."""
  xs = np.linspace(xlim[0], xlim[1], num)
  ys = np.linspace(ylim[0], ylim[1], num)
  x, y = np.meshgrid(xs, ys)
  z = np.asarray(fn(jnp.stack([jnp.asarray(x), jnp.asarray(y)], axis=-1)))
  return x, y, z
