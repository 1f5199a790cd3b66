"""SGD vs RMSprop on the classic ill-conditioned bowl ``x^2 + 100 y^2`` from (5, -2).

Both use learning rate 0.01 (the classic setting). For SGD the y-step is
``y - 0.01 * 200 y = -y``: exactly on the stability edge ``lr = 2 / L`` of the
steep direction (curvature ``L = 200``), so y flips between -2 and +2 forever
and the loss never drops below 400, while x shrinks by 0.98 per step. RMSprop
divides each coordinate by the RMS of its own gradients, so both move at about
``lr`` per step and the iterate reaches the minimum (then rattles at about
``lr / 2``, since a constant learning rate never anneals). Deterministic: no
random seed, so the demo takes no ``--seeds``.
"""

from __future__ import annotations

from typing import Any

import optax

import rmsprop_optax
from rmsprop_optax.demos import functions
from rmsprop_optax.demos.trajectory import Trajectory, run_trajectory

NAME = 'quadratic'
LEARNING_RATE = 0.01
NUM_STEPS = 1000
FAST_STEPS = 600


def optimizers(learning_rate: float = LEARNING_RATE) -> dict[str, optax.GradientTransformation]:
  """SGD and RMSprop (decay 0.9, eps 1e-8 inside the root) at one learning rate."""
  return {
    'sgd': optax.sgd(learning_rate),
    'rmsprop': rmsprop_optax.rmsprop(learning_rate, decay=0.9, eps=1e-8),
  }


def trajectories(num_steps: int = NUM_STEPS) -> dict[str, Trajectory]:
  """Each optimizer's path on ``x^2 + 100 y^2`` from (5, -2), float32."""
  problem = functions.QUADRATIC
  return {
    name: run_trajectory(opt, problem.fn, problem.start, num_steps)
    for name, opt in optimizers().items()
  }


def run(*, fast: bool = False, seed: int = 0, progress: bool = False) -> dict[str, Any]:
  """Runs the comparison; deterministic (``seed`` and ``progress`` are unused).

  Metrics per optimizer: ``final_loss``, ``final_x``, ``final_y`` and
  ``max_abs_y_last_10`` (how far y still swings over the last 10 iterates).
  Curves: the loss at each iterate; ``y``: each optimizer's y coordinate at
  each iterate (for :func:`figure`).
  """
  del seed, progress  # A deterministic problem with a few hundred steps.
  runs = trajectories(FAST_STEPS if fast else NUM_STEPS)
  metrics = {}
  for name, tr in runs.items():
    metrics[name] = {
      'final_loss': float(tr.losses[-1]),
      'final_x': float(tr.path[-1, 0]),
      'final_y': float(tr.path[-1, 1]),
      'max_abs_y_last_10': float(abs(tr.path[-10:, 1]).max()),
    }
  return {
    'name': NAME,
    'deterministic': True,  # no random seed: the table says so
    'metrics': metrics,
    'curves': {name: [float(v) for v in tr.losses] for name, tr in runs.items()},
    'curve_label': 'loss x^2 + 100 y^2',
    'curve_xlabel': 'step',
    'curve_logy': True,
    'y': {name: [float(v) for v in tr.path[:, 1]] for name, tr in runs.items()},
    'learning_rate': LEARNING_RATE,
    'title': f'x^2 + 100 y^2 from (5, -2): sgd vs rmsprop (decay 0.9), both lr {LEARNING_RATE:g}',
  }


# Steps of y(t) drawn: SGD's flip is one step long, so a few hundred steps show it
# as a band while RMSprop's y crawls from -2 to 0 at about lr per step.
Y_STEPS = 300


def figure(result: dict[str, Any]) -> Any:
  """Two panels: y(t) over the first ``Y_STEPS`` steps, and the loss on a log axis.

  Both titles say how many steps they show; the loss panel shades the steps
  the y panel covers.
  """
  import matplotlib.pyplot as plt

  from rmsprop_optax.demos import plotting

  fig, (ax_y, ax_loss) = plt.subplots(1, 2, figsize=(11.0, 4.4), layout='constrained')
  for name, y in result['y'].items():
    y = y[: Y_STEPS + 1]
    ax_y.plot(range(len(y)), y, label=name, color=plotting.color_for(name), linewidth=0.9)
  ax_y.axhline(0.0, color='black', linewidth=0.6)
  ax_y.set_xlabel('step')
  ax_y.set_ylabel('y (the steep coordinate)')
  steps = len(next(iter(result['y'].values()))) - 1
  shown = min(Y_STEPS, steps)
  ax_y.set_title(
    f'y over the first {shown} of {steps} steps: SGD flips -2, +2, -2, ... '
    '(lr = 2 / curvature 200)',
    fontsize='medium',
  )
  ax_y.grid(True, alpha=0.3)
  ax_y.legend(loc='lower right', framealpha=0.9, fontsize='small')
  if shown < steps:  # where the left panel's steps lie on this one's axis
    ax_loss.axvspan(0, shown, color='0.9', zorder=0, label=f'steps 0-{shown} (left panel)')
  plotting.draw_curves(result, ax_loss)
  ax_loss.set_title(
    f'loss (log), all {steps} steps: SGD stuck at 100 * 2^2 = 400', fontsize='medium'
  )
  fig.suptitle(result['title'])
  return fig
