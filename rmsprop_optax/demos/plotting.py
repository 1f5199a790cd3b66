"""Plotting helpers for the notebooks and the demo CLI: contours, paths, curves.

matplotlib is imported inside the functions, so ``import rmsprop_optax.demos``
works without it (it is in the ``examples`` extra). Every function draws on a
given ``ax`` (or a new figure) and returns the ``Axes``, so panels compose.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from rmsprop_optax.demos import functions

# One colour per optimizer name, stable across notebooks (the matplotlib
# 'tab10' colours); names not listed cycle through the default colours.
COLORS: dict[str, str] = {
  'sgd': '#7f7f7f',
  'momentum': '#8c564b',
  'adagrad': '#d62728',
  'rmsprop': '#1f77b4',
  'rmsprop + momentum': '#17becf',
  'adam': '#2ca02c',
}


def _axes(ax: Any, figsize: tuple[float, float]) -> Any:
  if ax is not None:
    return ax
  import matplotlib.pyplot as plt

  _, ax = plt.subplots(figsize=figsize, layout='constrained')
  return ax


# matplotlib refuses both an alias and its long name ('lw' and 'linewidth').
_ALIASES = {'c': 'color', 'lw': 'linewidth', 'ls': 'linestyle', 'ms': 'markersize'}


def _style(styles: Mapping[str, Mapping[str, Any]] | None, label: str) -> dict[str, Any]:
  """``styles[label]`` with short aliases spelled out, so it can override defaults."""
  if not styles or label not in styles:
    return {}
  return {_ALIASES.get(k, k): v for k, v in styles[label].items()}


def color_for(name: str) -> str | None:
  """The fixed colour of a known optimizer name (case-insensitive), else ``None``."""
  return COLORS.get(name.lower())


def contour(
  fn: Callable[[Any], Any],
  xlim: tuple[float, float],
  ylim: tuple[float, float],
  *,
  ax: Any = None,
  levels: int = 25,
  log: bool = True,
  num: int = 200,
  floor: float = 1e-4,
) -> Any:
  """Contour lines of ``fn`` over a box.

  With ``log=True`` the levels are geometrically spaced from
  ``floor * max`` to the maximum, so both the steep walls and the flat valley
  floor get lines (a loss spanning decades looks empty with linear levels).

  Returns:
    The ``Axes``.
  """
  from matplotlib import colors

  ax = _axes(ax, (6.0, 4.5))
  x, y, z = functions.grid(fn, xlim, ylim, num)
  if log:
    top = float(np.max(z))
    lows = np.geomspace(max(float(np.min(z)), top * floor, 1e-12), top, levels)
    ax.contour(x, y, z, levels=lows, norm=colors.LogNorm(), cmap='Greys_r', linewidths=0.7)
  else:
    ax.contour(x, y, z, levels=levels, cmap='Greys_r', linewidths=0.7)
  ax.set_xlim(*xlim)
  ax.set_ylim(*ylim)
  ax.set_xlabel('x')
  ax.set_ylabel('y')
  return ax


def plot_trajectories(
  problem: functions.Problem,
  paths: Mapping[str, Any],
  *,
  ax: Any = None,
  title: str | None = None,
  markers: bool = True,
  levels: int = 25,
  styles: Mapping[str, Mapping[str, Any]] | None = None,
  legend_loc: str = 'best',
) -> Any:
  """Paths of optimizers drawn over the contour lines of a test function.

  Args:
    problem: a :class:`~rmsprop_optax.demos.functions.Problem` (function,
      start, minimum, plot box).
    paths: ``{label: array of shape (num_steps + 1, 2)}``.
    ax: an ``Axes`` to draw on (default: a new figure).
    title: the axes title (default: the problem's name).
    markers: draw a dot at every iterate (useful for short runs).
    levels: number of contour levels.
    styles: per label, extra ``Axes.plot`` keyword arguments (e.g. ``alpha``).
    legend_loc: where the legend goes (a matplotlib ``loc``).

  Returns:
    The ``Axes``; one line per path, labelled, plus the start (black dot) and
    the minimum (star).
  """
  ax = contour(problem.fn, problem.xlim, problem.ylim, ax=ax, levels=levels)
  for label, path in paths.items():
    path = np.asarray(path)
    kwargs: dict[str, Any] = {
      'marker': '.' if markers else None,
      'markersize': 3,
      'linewidth': 1.2,
      'alpha': 0.85,
      'color': color_for(label),
    }
    kwargs.update(_style(styles, label))
    ax.plot(path[:, 0], path[:, 1], label=label, **kwargs)
  ax.plot(*problem.start, 'o', color='black', markersize=6, zorder=5)
  ax.plot(*problem.minimum, '*', color='gold', markeredgecolor='black', markersize=14, zorder=5)
  ax.set_title(problem.name if title is None else title)
  ax.legend(loc=legend_loc, fontsize='small')
  return ax


def plot_curves(
  curves: Mapping[str, Sequence[float] | np.ndarray],
  *,
  ax: Any = None,
  xlabel: str = 'step',
  ylabel: str = 'loss',
  logy: bool = True,
  title: str | None = None,
  styles: Mapping[str, Mapping[str, Any]] | None = None,
) -> Any:
  """One line per curve (``{label: values}``), x = index; log y by default.

  ``styles`` maps a label to extra ``Axes.plot`` keyword arguments (e.g.
  ``{'linestyle': '--'}`` to tell an overlaid reference apart).

  Returns:
    The ``Axes``.
  """
  ax = _axes(ax, (6.0, 4.0))
  for label, values in curves.items():
    kwargs: dict[str, Any] = {'color': color_for(label), 'linewidth': 1.5}
    kwargs.update(_style(styles, label))
    ax.plot(np.arange(len(values)), np.asarray(values), label=label, **kwargs)
  if logy:
    ax.set_yscale('log')
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  if title is not None:
    ax.set_title(title)
  ax.grid(True, which='major', alpha=0.3)
  ax.legend(loc='best', fontsize='small')
  return ax


def save(ax_or_fig: Any, path: str | os.PathLike[str], *, dpi: int = 110) -> str:
  """Saves the figure of an ``Axes`` (or a ``Figure``) to ``path``; returns the path."""
  fig = ax_or_fig if hasattr(ax_or_fig, 'savefig') else ax_or_fig.figure
  fig.savefig(os.fspath(path), dpi=dpi)
  return os.fspath(path)


# -- demo figures ---------------------------------------------------------------
# ``python -m rmsprop_optax demo`` writes one PNG per demo. A demo module may
# define ``figure(result) -> Figure`` (drawn from its own result dict); the
# others get :func:`curves_figure`, driven by the generic result keys
# (``curves``, ``curve_x`` with its ``curve_x_label``, else ``curve_xlabel``
# for the x = 1..n, ``curve_label``, ``curve_logy``, ``baselines``, ``title``).


def fmt_lr(value: float) -> str:
  """A learning rate as people write it: ``0.01``, ``0.3``, ``1``, ``3e-3``, ``2.5e-4``."""
  value = float(value)
  if value != 0 and abs(value) < 0.01:
    mantissa, exponent = f'{value:.2e}'.split('e')
    return f'{mantissa.rstrip("0").rstrip(".")}e{int(exponent)}'
  return f'{value:.3g}'


def versus(learning_rates: Mapping[str, float | str], *, prefix: str = 'lr ') -> str:
  """``'rmsprop lr 3e-3 vs sgd lr 0.3'`` from ``{name: learning rate}`` (a string is kept)."""
  return ' vs '.join(
    f'{name} {prefix}{value if isinstance(value, str) else fmt_lr(value)}'
    for name, value in learning_rates.items()
  )


def smooth(values: Sequence[float] | np.ndarray, window: int) -> np.ndarray:
  """Trailing mean over the last ``window`` values (fewer at the start); same length."""
  values = np.asarray(values, dtype=np.float64)
  sums = np.cumsum(np.concatenate([[0.0], values]))
  ends = np.arange(1, len(values) + 1)
  starts = np.maximum(ends - window, 0)
  return (sums[ends] - sums[starts]) / (ends - starts)


def curve_x(result: Mapping[str, Any], length: int) -> np.ndarray:
  """The x values of a result's curves: ``result['curve_x']`` when given, else 1..length."""
  if 'curve_x' in result:
    return np.asarray(result['curve_x'], dtype=np.float64)
  return np.arange(1, length + 1, dtype=np.float64)


def plain_log_ticks(ax: Any, low: float, high: float, most: int = 8) -> None:
  """Ticks on a log y axis labelled as plain numbers (20, 30, 50, 100), not ``2x10^1``.

  Within less than about a decade a log axis has at most one major tick, and
  matplotlib labels the minor ones in scientific notation; this puts major
  ticks at 1, 2, 3, 5 (or finer, up to ``most`` ticks) times powers of ten
  inside ``[low, high]``, labels them with ``{x:g}`` and hides minor labels.
  """
  from matplotlib import ticker

  decades = range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)
  ticks: list[float] = []
  for mantissas in ((1, 1.5, 2, 2.5, 3, 4, 5, 6, 8), (1, 2, 3, 5), (1, 2, 5), (1,)):
    ticks = [m * 10.0**e for e in decades for m in mantissas if low <= m * 10.0**e <= high]
    if len(ticks) <= most:
      break
  ax.yaxis.set_major_locator(ticker.FixedLocator(ticks))
  ax.yaxis.set_major_formatter(ticker.StrMethodFormatter('{x:g}'))
  ax.yaxis.set_minor_formatter(ticker.NullFormatter())


def draw_curves(result: Mapping[str, Any], ax: Any) -> Any:
  """A result's curves (one line per optimizer) and baselines (dashed) on ``ax``."""
  for name, values in result['curves'].items():
    ax.plot(curve_x(result, len(values)), values, label=name, color=color_for(name), linewidth=1.6)
  greys = ('0.35', '0.6', '0.8')
  for i, (label, value) in enumerate(result.get('baselines', {}).items()):
    ax.axhline(value, linestyle='--', color=greys[i % 3], linewidth=1.2, label=label)
  if result.get('curve_logy', False):
    ax.set_yscale('log')
    values = np.concatenate([np.asarray(v, float) for v in result['curves'].values()])
    values = values[values > 0]
    if values.size and values.max() / values.min() < 100:
      baselines = [v for v in result.get('baselines', {}).values() if v > 0]
      shown = np.concatenate([values, baselines])  # the axis spans the baselines too
      plain_log_ticks(ax, float(shown.min()), float(shown.max()))
  xlabel = result.get('curve_xlabel', 'step')
  if 'curve_x' in result:  # real units; 'curve_xlabel' may describe the index 1..n
    xlabel = result.get('curve_x_label', xlabel)
  ax.set_xlabel(xlabel)
  ax.set_ylabel(result.get('curve_label', ''))
  ax.grid(True, which='both', alpha=0.3)
  ax.legend(framealpha=0.9, fontsize='small')
  return ax


def curves_figure(result: Mapping[str, Any]) -> Any:
  """The generic demo figure: :func:`draw_curves` under ``result['title']``."""
  import textwrap

  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(8.0, 4.8), layout='constrained')
  draw_curves(result, ax)
  ax.set_title('\n'.join(textwrap.wrap(result.get('title', result['name']), 90)), fontsize='medium')
  return fig


def caption(fig: Any, text: str) -> None:
  """A wrapped note under a figure (what to read in it, why a curve looks odd)."""
  import textwrap

  fig.supxlabel('\n'.join(textwrap.wrap(text, 130)), fontsize='small', ha='center')


def demo_figure(result: Mapping[str, Any]) -> Any:
  """The figure of one demo result: its module's ``figure(result)``, else :func:`curves_figure`.

  The module is the one the command line runs under the result's name (``cli.DEMOS``), else
  ``rmsprop_optax.demos.<name>``. A result over several seeds (``seed_metrics``) holds seed
  means; the title says so.
  """
  import importlib

  from rmsprop_optax.demos.cli import DEMOS  # here: cli imports this module

  name = result['name']
  try:
    module = importlib.import_module(DEMOS.get(name, f'rmsprop_optax.demos.{name}'))
  except ModuleNotFoundError:
    module = None
  draw = getattr(module, 'figure', None)
  fig = draw(result) if draw is not None else curves_figure(result)
  seeds = result.get('seeds', []) if 'seed_metrics' in result else []
  if len(seeds) > 1:  # A run over several seeds (``--seeds``) draws the seed means.
    note = f'curves and markers: mean over {len(seeds)} seeds ({seeds[0]}–{seeds[-1]})'
    title = fig.get_suptitle()
    fig.suptitle(f'{title}\n{note}' if title else note, fontsize='medium')
  return fig


def plot_result(result: Mapping[str, Any], path: str | os.PathLike[str], *, dpi: int = 120) -> str:
  """Draws a demo result (:func:`demo_figure`) into a PNG at ``path``; returns the path."""
  import sys

  import matplotlib

  if 'matplotlib.pyplot' not in sys.modules:
    matplotlib.use('Agg')  # Headless: no display on CI machines (a notebook keeps its own).
  import matplotlib.pyplot as plt

  fig = demo_figure(result)
  try:
    return save(fig, path, dpi=dpi)
  finally:
    plt.close(fig)
