"""AdaGrad vs RMSprop on a non-stationary gradient sequence (the classic example).

The gradient is ``g = 100`` for 100 steps, then ``g = 1`` for 100 steps.
AdaGrad divides by the root of the *sum* of all squared gradients, which after
the first phase is ``1e6`` and stays there: its step in the second phase is
about ``lr / 1000``, collapsed for good. RMSprop divides by the root of an
*exponential average*, which forgets the first phase over about
``1 / (1 - decay)`` steps: at decay 0.9 its step is back to about ``lr`` within
a few dozen steps; at 0.99 it is recovering; at 0.999 the average has not even
finished filling up from the first phase (its memory, 1000 steps, is longer
than the whole run).

The "effective learning rate" here is ``|update| / |g|``: the step per unit of
gradient that each optimizer actually took, read from its updates.
Deterministic: no random seed, so the demo takes no ``--seeds``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import rmsprop_optax
from rmsprop_optax.demos.trajectory import feed_gradients

NAME = 'adagrad_vs_rmsprop'
LEARNING_RATE = 0.01
PHASE_STEPS = 100
FIRST_GRADIENT = 100.0
SECOND_GRADIENT = 1.0
DECAYS = (0.9, 0.99, 0.999)


class Series(NamedTuple):
  """One optimizer's statistics over time (NumPy, one entry per step)."""

  accumulator: np.ndarray  # AdaGrad: sum of g^2; RMSprop: nu, the EMA of g^2.
  update: np.ndarray  # the update applied at each step (negative: descent).
  effective_lr: np.ndarray  # |update| / |g|.


def gradient_sequence(
  phase_steps: int = PHASE_STEPS,
  first: float = FIRST_GRADIENT,
  second: float = SECOND_GRADIENT,
) -> np.ndarray:
  """``phase_steps`` gradients equal to ``first``, then as many equal to ``second``."""
  return np.concatenate([np.full(phase_steps, first), np.full(phase_steps, second)]).astype(
    np.float32
  )


def optimizers(
  learning_rate: float = LEARNING_RATE, decays: tuple[float, ...] = DECAYS
) -> dict[str, optax.GradientTransformation]:
  """``optax.adagrad`` (its defaults: accumulator starts at 0.1, eps 1e-7) and RMSprop per decay."""
  out: dict[str, optax.GradientTransformation] = {'adagrad': optax.adagrad(learning_rate)}
  for decay in decays:
    out[f'rmsprop (decay {decay})'] = rmsprop_optax.rmsprop(learning_rate, decay=decay)
  return out


def _accumulator(states: Any) -> jax.Array:
  """The squared-gradient statistic inside a stacked optimizer state."""
  is_rss = lambda x: isinstance(x, optax.ScaleByRssState)
  for leaf in jax.tree.leaves(states, is_leaf=is_rss):
    if is_rss(leaf):
      return leaf.sum_of_squares
  return rmsprop_optax.find_rms_state(states).nu


def analyse(
  gradients: np.ndarray | None = None,
  learning_rate: float = LEARNING_RATE,
  decays: tuple[float, ...] = DECAYS,
) -> dict[str, Series]:
  """Feeds the sequence to every optimizer; returns each one's :class:`Series`."""
  g = jnp.asarray(gradient_sequence() if gradients is None else gradients, jnp.float32)
  out = {}
  for name, opt in optimizers(learning_rate, decays).items():
    result = feed_gradients(opt, g, jnp.zeros((), jnp.float32))
    update = np.asarray(result.updates)
    out[name] = Series(
      accumulator=np.asarray(_accumulator(result.states)),
      update=update,
      effective_lr=np.abs(update) / np.abs(np.asarray(g)),
    )
  return out


def run(*, fast: bool = False, seed: int = 0, progress: bool = False) -> dict[str, Any]:
  """Runs the comparison (200 steps; ``fast``, ``seed``, ``progress`` change nothing).

  Metrics per optimizer, as fractions of the learning rate: the effective
  learning rate at the end of the first phase (``eff_lr_end_phase1``) and of
  the second (``eff_lr_end_phase2``), and the second phase's final
  accumulator (``accumulator_end``). Curves: effective learning rate / lr.
  """
  del fast, seed, progress  # 200 scalar steps: already instant, and deterministic.
  series = analyse()
  metrics = {
    name: {
      'eff_lr_end_phase1': float(s.effective_lr[PHASE_STEPS - 1] / LEARNING_RATE),
      'eff_lr_end_phase2': float(s.effective_lr[-1] / LEARNING_RATE),
      'accumulator_end': float(s.accumulator[-1]),
    }
    for name, s in series.items()
  }
  return {
    'name': NAME,
    'deterministic': True,  # no random seed: the table says so
    'metrics': metrics,
    'curves': {
      name: [float(v) for v in s.effective_lr / LEARNING_RATE] for name, s in series.items()
    },
    'curve_label': 'effective learning rate / lr',
    'curve_xlabel': 'step',
    'curve_logy': True,
    'learning_rate': LEARNING_RATE,
    'phase_steps': PHASE_STEPS,
    'gradients': (FIRST_GRADIENT, SECOND_GRADIENT),
  }


def figure(result: dict[str, Any]) -> Any:
  """The effective step per optimizer on a log axis, the gradient switch marked."""
  import matplotlib.pyplot as plt

  from rmsprop_optax.demos import plotting

  first, second = result['gradients']
  switch = result['phase_steps']
  fig, ax = plt.subplots(figsize=(10.0, 4.8), layout='constrained')
  plotting.draw_curves(result, ax)
  ax.axvline(
    switch + 0.5,
    color='black',
    linestyle=':',
    linewidth=1.2,
    label=f'gradient {first:g} -> {second:g} (step {switch + 1})',
  )
  ax.legend(fontsize='small', loc='upper left', bbox_to_anchor=(1.01, 1.0))
  adagrad = result['curves'].get('adagrad')
  if adagrad:
    ax.annotate(
      f'adagrad: collapsed at {plotting.fmt_lr(adagrad[-1])} x lr (its sum of g^2 never forgets)',
      xy=(len(adagrad), adagrad[-1]),
      xytext=(switch + 5, adagrad[-1] * 1.4),
      fontsize='small',
      color=plotting.color_for('adagrad'),
    )
  ax.set_xlabel('step (one gradient per step)')
  ax.set_title(
    f'effective step |update| / |g| on g = {first:g} then {second:g}: '
    f'adagrad vs rmsprop, all lr {plotting.fmt_lr(result["learning_rate"])}',
    fontsize='medium',
  )
  return fig
