"""Rosenbrock's valley: SGD, momentum, RMSprop, RMSprop + momentum and Adam.

From (-1.5, 2) every method first falls into the curved valley; the race is
then along its nearly flat floor to (1, 1). Plain SGD needs a learning rate
small enough for the steep walls, so it crawls along the floor. RMSprop
divides by the per-coordinate RMS, so it moves about ``lr`` per step in each
coordinate whatever the slope: fast along the floor, but without momentum or
annealing it ends rattling across the valley at that step size. Momentum
(heavy-ball, or inside RMSprop) and Adam (RMSprop + momentum + bias
correction) settle.

Learning rates were picked once for a readable picture (a choice, not a
tuned optimum): SGD and momentum 1e-3, RMSprop 3e-3, RMSprop + momentum 1e-3,
Adam 1e-2. The problem is deterministic: it has no random seed, so the demo
takes no ``--seeds``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import optax

import rmsprop_optax
from rmsprop_optax.demos import functions
from rmsprop_optax.demos.trajectory import Trajectory, run_trajectory

NAME = 'rosenbrock'
NUM_STEPS = 3000
FAST_STEPS = 1000
# Loss threshold for "arrived": ``steps_to_1e-3`` counts iterates until below it.
ARRIVED = 1e-3


# Learning rate per optimizer (momentum terms 0.9, RMSprop decay 0.9).
LEARNING_RATES = {
  'sgd': 1e-3,
  'momentum': 1e-3,
  'rmsprop': 3e-3,
  'rmsprop + momentum': 1e-3,
  'adam': 1e-2,
}


def optimizers(
  learning_rates: dict[str, float] | None = None,
) -> dict[str, optax.GradientTransformation]:
  """The five optimizers of the comparison (see the module docstring).

  ``learning_rates`` overrides :data:`LEARNING_RATES` per name (the notebooks
  let the reader change them).
  """
  lr = {**LEARNING_RATES, **(learning_rates or {})}
  return {
    'sgd': optax.sgd(lr['sgd']),
    'momentum': optax.sgd(lr['momentum'], momentum=0.9),
    'rmsprop': rmsprop_optax.rmsprop(lr['rmsprop'], decay=0.9),
    'rmsprop + momentum': rmsprop_optax.rmsprop(lr['rmsprop + momentum'], decay=0.9, momentum=0.9),
    'adam': optax.adam(lr['adam']),
  }


def trajectories(
  num_steps: int = NUM_STEPS, learning_rates: dict[str, float] | None = None
) -> dict[str, Trajectory]:
  """Each optimizer's path on Rosenbrock from (-1.5, 2), float32 (see :func:`optimizers`)."""
  problem = functions.ROSENBROCK
  return {
    name: run_trajectory(opt, problem.fn, problem.start, num_steps)
    for name, opt in optimizers(learning_rates).items()
  }


def run(*, fast: bool = False, seed: int = 0, progress: bool = False) -> dict[str, Any]:
  """Runs the comparison; deterministic (``seed`` and ``progress`` are unused).

  Metrics per optimizer: ``final_loss``, ``final_distance`` to (1, 1) and
  ``steps_to_1e-3`` (first iterate with loss below 1e-3; -1 if never).
  Curves: the loss at each iterate; ``paths``: each optimizer's iterates
  ``[[x, y], ...]`` (for :func:`figure`).
  """
  del seed, progress  # Deterministic.
  runs = trajectories(FAST_STEPS if fast else NUM_STEPS)
  minimum = np.asarray(functions.ROSENBROCK.minimum)
  metrics = {}
  for name, tr in runs.items():
    below = np.flatnonzero(tr.losses < ARRIVED)
    metrics[name] = {
      'final_loss': float(tr.losses[-1]),
      'final_distance': float(np.linalg.norm(tr.path[-1] - minimum)),
      'steps_to_1e-3': int(below[0]) if below.size else -1,
    }
  return {
    'name': NAME,
    'deterministic': True,  # no random seed: the table says so
    'metrics': metrics,
    'curves': {name: [float(v) for v in tr.losses] for name, tr in runs.items()},
    'curve_label': 'Rosenbrock loss',
    'curve_xlabel': 'step',
    'curve_logy': True,
    'paths': {name: tr.path.tolist() for name, tr in runs.items()},
    'learning_rates': dict(LEARNING_RATES),
  }


def figure(result: dict[str, Any]) -> Any:
  """One path panel per optimizer over Rosenbrock's contours, and the loss on a log axis.

  All paths follow the same curved valley, so drawn on one panel the last one
  hides the others; each gets its own panel (same box, same contours), with
  its end point marked and its final loss in the title.
  """
  import matplotlib.pyplot as plt

  from rmsprop_optax.demos import plotting

  names = list(result['paths'])
  fig = plt.figure(figsize=(14.0, 7.6), layout='constrained')
  top, bottom = np.asarray(fig.subfigures(2, 1, height_ratios=[1.0, 1.15])).ravel()
  path_axes = top.subplots(1, len(names), sharex=True, sharey=True)
  for ax, name in zip(np.atleast_1d(path_axes), names):
    path = np.asarray(result['paths'][name])
    plotting.plot_trajectories(
      functions.ROSENBROCK,
      {name: path},
      ax=ax,
      markers=False,
      title=f'{name}: loss {result["curves"][name][-1]:.1e} at the end',
      legend_loc='lower left',
      styles={name: {'linewidth': 2.0}},
      levels=15,
    )
    ax.plot(path[-1, 0], path[-1, 1], 'o', color=plotting.color_for(name), markeredgecolor='black')
    ax.title.set_fontsize('small')
    ax.get_legend().remove()
  top.suptitle('paths from (-1.5, 2) (black dot) to the minimum (1, 1) (star)', fontsize='medium')
  ax_loss = bottom.subplots()
  plotting.draw_curves(result, ax_loss)
  ax_loss.set_title('loss (log axis)', fontsize='medium')
  steps = len(next(iter(result['paths'].values()))) - 1
  fig.suptitle(
    f'Rosenbrock, {steps} steps: ' + plotting.versus(result['learning_rates']), fontsize='medium'
  )
  return fig
