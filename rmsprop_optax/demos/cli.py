"""``python -m rmsprop_optax demo [NAME ...|all] [--fast] [--out DIR] [--seed N] [--seeds N]``.

Runs the demos (each module's ``run(fast=, seed=, progress=True)``, with
``num_seeds=`` for ``--seeds``, which every demo with a random seed takes), prints a
results table per demo (:func:`format_results`: demo, optimizer, metric,
value, baseline), writes the same text to ``results.md`` and one
learning-curve PNG per demo into the output folder.

A single run on XLA:CPU differs between CPUs (their instruction sets round
differently), so one seed's number is not what another machine prints:
``--seeds N`` runs the seeds ``--seed .. --seed + N - 1`` and the table shows
each metric's mean and its range (min-max) over them, and, for the demos'
headline metrics, on how many seeds each optimizer beats each other one. The
toy problems (``SEEDLESS``) are deterministic: they have no seed to vary.
"""

from __future__ import annotations

import argparse
import collections
import importlib
import math
import numbers
import os
import re
import sys
import time
from collections.abc import Sequence
from typing import Any

from rmsprop_optax.demos import plotting

# Name -> module. Imported lazily, so a demo's dependencies are only needed
# when it runs, and a demo not written yet is skipped with a message.
DEMOS = {
  'quadratic': 'rmsprop_optax.demos.quadratic',
  'rosenbrock': 'rmsprop_optax.demos.rosenbrock',
  'adagrad_vs_rmsprop': 'rmsprop_optax.demos.adagrad_vs_rmsprop',
  'digits': 'rmsprop_optax.demos.digits',
  'char_lstm': 'rmsprop_optax.demos.char_lstm',
  'dqn': 'rmsprop_optax.demos.dqn',
  'matrix_factorization': 'rmsprop_optax.demos.matrix_factorization',
  'sweep': 'rmsprop_optax.demos.lr_sensitivity',
  'low_memory': 'rmsprop_optax.demos.low_memory',
}
# Run only when named: too long for `all` (the full learning-rate sweep takes 10-30 minutes, the
# low-memory comparison, 36 training runs, 9 minutes and more).
NOT_IN_ALL = frozenset({'sweep', 'low_memory'})
# Deterministic toy problems: no random seed, so no seed spread; ``--seeds`` is refused for them.
SEEDLESS = frozenset({'quadratic', 'rosenbrock', 'adagrad_vs_rmsprop'})
_SEEDLESS_NOTE = (
  f'{", ".join(n for n in DEMOS if n in SEEDLESS)} are deterministic and have no random seed'
)
# The demos with a random seed; their ``run`` takes ``num_seeds`` (``--seeds``).
TAKE_SEEDS = frozenset(DEMOS) - SEEDLESS
# The demos that run several seeds without ``--seeds`` (the others run one).
SEVERAL_SEEDS_BY_DEFAULT = frozenset({'sweep', 'low_memory'})
# The headline metrics by which the table ranks the optimizers seed by seed (over several
# seeds): True where higher is better.
RANKED = {
  'test_accuracy': True,
  'val_perplexity': False,
  'greedy_mean_return': True,
  'test_rmse': False,
}
DEFAULT_OUT = 'rmsprop_optax_out'


def _load(name: str) -> Any | None:
  module_path = DEMOS[name]
  try:
    return importlib.import_module(module_path)
  except ModuleNotFoundError as err:
    if err.name != module_path:
      raise  # A real missing dependency inside the demo: let it surface.
    print(f'[skip] {name}: module {module_path} is not available')
    return None


# Readable names of the metrics the demos report; others fall back to
# ``_label``'s generic rewrite (underscores to spaces).
METRIC_LABELS = {
  'final_loss': 'final loss',
  'final_x': 'final x',
  'final_y': 'final y',
  'max_abs_y_last_10': 'largest abs(y), last 10 steps',
  'final_distance': 'final distance to the minimum',
  'eff_lr_end_phase1': 'effective lr / lr, end of phase 1',
  'eff_lr_end_phase2': 'effective lr / lr, end of phase 2',
  'accumulator_end': 'final accumulator',
  'test_accuracy': 'test accuracy',
  'test_loss': 'test loss',
  'final_train_loss': 'final training loss',
  'val_perplexity': 'validation perplexity',
  'val_bits_per_char': 'validation bits per character',
  'train_perplexity_last_10pct': 'training perplexity, last 10%',
  'greedy_mean_return': 'greedy mean return',
  'train_return_last_10pct': 'training return, last 10%',
  'test_rmse': 'held-out RMSE',
  'train_rmse': 'training RMSE',
  'digits_decades_within_1pct': 'digits: decades of lr within 1% of best accuracy',
  'lstm_decades_within_5pct': 'LSTM: decades of lr within 5% of best perplexity',
  'digits_best_lr': 'digits: best lr',
  'lstm_best_lr': 'LSTM: best lr',
  'digits_best_accuracy': 'digits: best test accuracy (seed mean)',
  'lstm_best_perplexity': 'LSTM: best validation perplexity (seed mean)',
  'digits_speedup_vs_same_jit': 'digits: one-jit speed-up vs loop, one jit reused',
  'digits_speedup_vs_own_jit': 'digits: one-jit speed-up vs loop, a jit per run',
  'lstm_speedup_vs_same_jit': 'LSTM: one-jit speed-up vs loop, one jit reused',
  'lstm_speedup_vs_own_jit': 'LSTM: one-jit speed-up vs loop, a jit per run',
}
HEADER = ('demo', 'optimizer', 'metric', 'value', 'baseline')
NEVER = 'never'


def _label(metric: str) -> str:
  """A metric key as a person reads it: ``steps_to_1e-3`` -> ``steps to reach loss < 1e-3``."""
  if metric in METRIC_LABELS:
    return METRIC_LABELS[metric]
  if metric.startswith('steps_to_'):
    return f'steps to reach loss < {metric.removeprefix("steps_to_")}'
  words = metric.replace('_', ' ')
  words = re.sub(r'\bval\b', 'validation', words)
  words = re.sub(r'\btrain\b', 'training', words)
  return re.sub(r'\b(\d+)pct\b', r'\1%', words)


def _fmt(value: Any, metric: str = '') -> str:
  """Four significant digits; whole numbers as integers; a negative step count as "never"."""
  if isinstance(value, bool) or not isinstance(value, numbers.Real):
    return str(value)
  if metric.startswith('steps_to') and value < 0:
    return NEVER  # The demos' marker for a threshold that was never reached.
  if isinstance(value, numbers.Integral):
    return str(int(value))
  value = float(value)
  if not math.isfinite(value):
    return str(value)
  if abs(value) >= 1e4:
    return f'{value:.0f}'
  return f'{value:.4g}'


def format_spread(values: Sequence[float], metric: str = '') -> str:
  """Per-seed values as ``mean (min–max)``; a value the same on every seed, once.

  >>> format_spread([0.975, 0.9861, 0.9806])
  '0.9806 (0.975–0.9861)'
  >>> format_spread([0.1028, 0.1028, 0.1028])
  '0.1028'
  """
  values = [float(v) for v in values]
  if all(v == values[0] for v in values):
    return _fmt(values[0], metric)
  if metric.startswith('steps_to') and min(values) < 0:  # Some seeds never reached it.
    reached = [v for v in values if v >= 0]
    never = f'{NEVER} on {len(values) - len(reached)} of {len(values)} seeds'
    return f'{format_spread(reached, metric)}, {never}'
  mean = math.fsum(values) / len(values)
  return f'{_fmt(mean, metric)} ({_fmt(min(values), metric)}–{_fmt(max(values), metric)})'


def _num_seeds(result: dict[str, Any]) -> int:
  """How many seeds the table's statistics are over (1 without ``seed_metrics``)."""
  return len(result['seeds']) if 'seed_metrics' in result else 1


def _optimizers(result: dict[str, Any]) -> list[str]:
  """The entries of ``result['metrics']`` that are optimizers: those with a learning curve.

  The others (``chance (majority class)``, ``unigram baseline``, ...) are
  baselines. A result without ``curves`` has optimizers only.
  """
  curves = result.get('curves')
  return [name for name in result['metrics'] if curves is None or name in curves]


def _rows(result: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
  """One demo's rows: grouped by metric, then the optimizers in the demo's order.

  A baseline goes into the baseline cell of the metric it reports. Over
  several seeds (``seed_metrics``) each cell is :func:`format_spread` of the
  per-seed values.
  """
  several = _num_seeds(result) > 1

  def cell(name: str, metric: str) -> str:
    if several:
      return format_spread(result['seed_metrics'][name][metric], metric)
    return _fmt(result['metrics'][name][metric], metric)

  names = _optimizers(result)
  optimizers = {name: result['metrics'][name] for name in names}
  baselines: dict[str, list[str]] = {}
  for name, metrics in result['metrics'].items():
    if name not in optimizers:
      label = name.removesuffix(' baseline')
      for metric in metrics:
        baselines.setdefault(metric, []).append(f'{label} {cell(name, metric)}')
  order = list(dict.fromkeys(m for metrics in optimizers.values() for m in metrics))
  order += [m for m in baselines if m not in order]  # A baseline no optimizer reports.
  rows: list[tuple[str, str, str, str, str]] = []
  for metric in order:
    baseline = ', '.join(baselines.get(metric, []))
    reported = [(o, cell(o, metric)) for o, ms in optimizers.items() if metric in ms]
    for i, (opt_name, value) in enumerate(reported or [('-', '-')]):
      demo = '' if rows else result['name']  # Named once: the table is this demo's.
      rows.append((demo, opt_name, _label(metric), value, baseline if i == 0 else ''))
  return rows


def _header(result: dict[str, Any]) -> tuple[str, ...]:
  """``HEADER``, its value column saying what the values are over several seeds or none."""
  n = _num_seeds(result)
  if n > 1:
    value = f'mean (min–max), {n} seeds'
  elif result.get('deterministic'):
    value = 'value (deterministic: no seed)'
  else:
    return HEADER
  return tuple(value if column == 'value' else column for column in HEADER)


def rankings(result: dict[str, Any]) -> list[str]:
  """Over several seeds: for each ``RANKED`` metric, on how many seeds each optimizer beat each other.

  The optimizers are ordered by their mean, best first; for each pair, the
  line counts the seeds on which the better-ranked one was strictly better,
  and the ties if any (a NaN counts as neither). No lines for one seed.
  """
  n = _num_seeds(result)
  if n < 2:
    return []
  lines = []
  for metric, higher in RANKED.items():
    per_seed = {
      name: result['seed_metrics'][name][metric]
      for name in _optimizers(result)
      if metric in result['seed_metrics'][name]
    }
    if len(per_seed) < 2:
      continue
    sign = 1.0 if higher else -1.0
    order = sorted(per_seed, key=lambda name: -sign * math.fsum(per_seed[name]) / n)
    lines.append(f'{_label(metric)} ({"higher" if higher else "lower"} is better), seed by seed:')
    for i, first in enumerate(order):
      for other in order[i + 1 :]:
        pairs = list(zip(per_seed[first], per_seed[other], strict=True))
        wins = sum(sign * (a - b) > 0 for a, b in pairs)
        ties = sum(a == b for a, b in pairs)
        tied = f', tied on {ties}' if ties else ''
        lines.append(f'- {first} beats {other} on {wins} of {n} seeds{tied}')
  return lines


def _markdown(rows: list[tuple[str, ...]]) -> str:
  """A Markdown table whose columns are padded to line up in a terminal too."""
  rows = [tuple(cell.replace('|', r'\|') for cell in row) for row in rows]  # A literal pipe.
  widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]

  def line(row: tuple[str, ...]) -> str:
    return '| ' + ' | '.join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + ' |'

  rule = '|' + '|'.join('-' * (w + 2) for w in widths) + '|'
  return '\n'.join([line(rows[0]), rule, *(line(row) for row in rows[1:])])


def format_results(results: list[dict[str, Any]]) -> str:
  """The results as Markdown: one table per demo, printed and written to ``results.md``.

  Pure: result dicts in, text out. Columns: demo (named on the first row),
  optimizer, metric, value and baseline; rows are grouped by metric, the
  demo's headline metric first. A step count of -1 (threshold never reached)
  reads "never". A deterministic demo's value column says it has no seed.

  Over several seeds (a result with ``seeds`` and ``seed_metrics``, from
  :func:`rmsprop_optax.demos._common.over_seeds`) each value is the mean and
  the range (min–max) over the seeds (:func:`format_spread`), the value
  column's header names the number of seeds, and :func:`rankings` follows
  the table.

  >>> result = {
  ...   'name': 'toy',
  ...   'metrics': {
  ...     'rmsprop': {'test_accuracy': 0.98061, 'steps_to_1e-3': 412},
  ...     'sgd': {'test_accuracy': 0.975, 'steps_to_1e-3': -1},
  ...     'chance': {'test_accuracy': 0.1028},
  ...   },
  ...   'curves': {'rmsprop': [], 'sgd': []},
  ... }
  >>> print(format_results([result]))
  | demo | optimizer | metric                     | value  | baseline      |
  |------|-----------|----------------------------|--------|---------------|
  | toy  | rmsprop   | test accuracy              | 0.9806 | chance 0.1028 |
  |      | sgd       | test accuracy              | 0.975  |               |
  |      | rmsprop   | steps to reach loss < 1e-3 | 412    |               |
  |      | sgd       | steps to reach loss < 1e-3 | never  |               |
  >>> result['seeds'] = [0, 1, 2]
  >>> result['seed_metrics'] = {
  ...   'rmsprop': {'test_accuracy': [0.98, 0.97, 0.99], 'steps_to_1e-3': [412, 400, 424]},
  ...   'sgd': {'test_accuracy': [0.975, 0.98, 0.96], 'steps_to_1e-3': [-1, -1, -1]},
  ...   'chance': {'test_accuracy': [0.1028, 0.1028, 0.1028]},
  ... }
  >>> print(format_results([result]))
  | demo | optimizer | metric                     | mean (min–max), 3 seeds | baseline      |
  |------|-----------|----------------------------|-------------------------|---------------|
  | toy  | rmsprop   | test accuracy              | 0.98 (0.97–0.99)        | chance 0.1028 |
  |      | sgd       | test accuracy              | 0.9717 (0.96–0.98)      |               |
  |      | rmsprop   | steps to reach loss < 1e-3 | 412 (400–424)           |               |
  |      | sgd       | steps to reach loss < 1e-3 | never                   |               |
  <BLANKLINE>
  test accuracy (higher is better), seed by seed:
  - rmsprop beats sgd on 2 of 3 seeds
  """
  tables = []
  for result in results:
    table = _markdown([_header(result), *_rows(result)])
    ranking = rankings(result)
    tables.append('\n\n'.join([table, '\n'.join(ranking)]) if ranking else table)
  return '\n\n'.join(tables)


def _parse(argv: list[str] | None) -> argparse.Namespace:
  """The demo names (several, ``all``, duplicates dropped) and the options.

  Names and options may be interleaved (``demo digits --fast dqn``). An
  unknown option is reported as such, with the value that follows it, rather
  than as an unknown demo name.
  """
  choices = ['all', *DEMOS]
  parser = argparse.ArgumentParser(
    prog='python -m rmsprop_optax demo',
    description='Train the demos, print a results table and plot the learning curves.',
  )
  parser.add_argument(
    'names',
    nargs='*',
    metavar='NAME',
    help=(
      f'demos to run (default: all, which leaves out {", ".join(sorted(NOT_IN_ALL))}); '
      f'choose from {", ".join(choices)}'
    ),
  )
  parser.add_argument('--fast', action='store_true', help='short runs (what the tests use)')
  parser.add_argument('--out', default=DEFAULT_OUT, help=f'output folder (default ./{DEFAULT_OUT})')
  seeded = [n for n in DEMOS if n in TAKE_SEEDS]
  parser.add_argument(
    '--seed',
    type=int,
    default=0,
    help=f'random seed, the first of --seeds (default 0); {_SEEDLESS_NOTE}',
  )
  parser.add_argument(
    '--seeds',
    type=_positive_int,
    default=None,
    metavar='N',
    help=(
      f'run the seeds --seed .. --seed+N-1: each metric shows as mean (min-max) over them, '
      f'and the headline metric is ranked seed by seed. Taken by the demos with a random seed '
      f'({", ".join(seeded)}; without it they run one seed, '
      f'{" and ".join(sorted(SEVERAL_SEEDS_BY_DEFAULT))} their own number). With all, the '
      f'deterministic demos run once; named with --seeds, they are refused'
    ),
  )
  argv = sys.argv[1:] if argv is None else list(argv)
  args, extras = parser.parse_known_intermixed_args(argv)
  unknown_names = [n for n in args.names if n not in choices]
  if extras:
    # The value of an unknown option lands among the names: report it with the option.
    flagged = collections.Counter([*extras, *unknown_names])
    reported = []
    for token in argv:  # In the order given, each once.
      if flagged[token] > 0:
        flagged[token] -= 1
        reported.append(token)
    parser.error(f'unrecognized arguments: {" ".join(reported)}')
  if unknown_names:
    parser.error(
      f'unknown demo {", ".join(map(repr, unknown_names))} (choose from {", ".join(choices)})'
    )
  names = args.names or ['all']
  every = [n for n in DEMOS if n not in NOT_IN_ALL]
  args.names = every if 'all' in names else list(dict.fromkeys(names))
  if args.seeds is not None:
    # Named explicitly, a deterministic demo refuses --seeds; with `all` it runs once.
    seedless = [n for n in dict.fromkeys(names) if n in SEEDLESS]
    if seedless:
      parser.error(
        f'--seeds does not apply to {", ".join(seedless)}: {_SEEDLESS_NOTE}; '
        f'--seeds applies to {", ".join(seeded)}'
      )
  return args


def _positive_int(text: str) -> int:
  try:
    value = int(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f'not a whole number: {text!r}') from None
  if value < 1:
    raise argparse.ArgumentTypeError(f'must be at least 1, got {value}')
  return value


def main(argv: list[str] | None = None) -> int:
  args = _parse(argv)
  os.makedirs(args.out, exist_ok=True)
  results = []
  start = time.perf_counter()
  for name in args.names:
    module = _load(name)
    if module is None:
      continue
    t0 = time.perf_counter()
    extra = {'num_seeds': args.seeds} if args.seeds is not None and name in TAKE_SEEDS else {}
    result = module.run(fast=args.fast, seed=args.seed, progress=True, **extra)
    elapsed = time.perf_counter() - t0
    png = os.path.join(args.out, f'{result["name"]}.png')
    plotting.plot_result(result, png)  # the demo's own figure, with its claim
    print(f'[done] {name} in {elapsed:.1f}s -> {png}', flush=True)
    results.append(result)
  if not results:
    print('no demo ran')
    return 1
  mode = 'fast' if args.fast else 'full'
  if args.seeds is not None and args.seeds > 1:
    seeds = f'seeds {args.seed}-{args.seed + args.seeds - 1}'
  elif args.seeds is None and SEVERAL_SEEDS_BY_DEFAULT.intersection(args.names):
    seeds = f'seeds from {args.seed}'  # each seed-comparing demo's own count
  else:
    seeds = f'seed {args.seed}'
  print(f'\nResults ({mode} mode, {seeds}, {time.perf_counter() - start:.0f}s):\n')
  table = format_results(results) + '\n'
  print(table, end='')
  with open(os.path.join(args.out, 'results.md'), 'w') as f:
    f.write(table)
  print(f'\nPlots and results.md written to {os.path.abspath(args.out)}')
  return 0
