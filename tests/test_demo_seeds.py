"""The seeded demos over several seeds: ``run(seed=s, num_seeds=k)`` and how seeds combine.

A single run on XLA:CPU differs between CPUs, so the demos' claims rest on
seed spreads: ``run`` runs ``run_seed`` for the seeds ``s .. s + k - 1`` and
``_common.over_seeds`` combines them (seed means, and each metric's per-seed
values for the table's mean and range). The combining is checked on
hand-made results; one real run (matrix factorisation, 100 steps) checks the
whole path from ``run`` to the table and the figure.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

import pytest
from _harness import need

from rmsprop_optax.demos import _common, cli

SEEDED = ('digits', 'char_lstm', 'dqn', 'matrix_factorization')


def _fake_result(seed: int) -> dict[str, Any]:
  return {
    'name': 'toy',
    'metrics': {
      'rmsprop': {'test_accuracy': 0.9 + seed / 100, 'steps': 10 * seed},
      'chance': {'test_accuracy': 0.1},
    },
    'curves': {'rmsprop': [1.0 + seed, 0.5]},
    'curve_x': [1, 2],
    'test_size': 360,
    'learning_rates': {'rmsprop': 3e-3},
    'title': 'toy',
  }


def _cells(line: str) -> list[str]:
  return [cell.strip() for cell in line.strip('|').split('|')]


def test_over_seeds_averages_what_differs_and_keeps_what_does_not():
  result = _common.over_seeds(_fake_result, [1, 2, 6])
  assert result['seeds'] == [1, 2, 6]
  assert result['seed_metrics'] == {
    'rmsprop': {'test_accuracy': [0.91, 0.92, 0.96], 'steps': [10.0, 20.0, 60.0]},
    'chance': {'test_accuracy': [0.1, 0.1, 0.1]},
  }
  assert result['metrics']['rmsprop']['test_accuracy'] == pytest.approx(2.79 / 3)
  assert result['metrics']['rmsprop']['steps'] == 30.0  # (10 + 20 + 60) / 3
  assert result['curves'] == {'rmsprop': [4.0, 0.5]}  # (2 + 3 + 7) / 3; 0.5 on every seed
  # The same on every seed: kept as it is (an int stays an int, for labels such as "360 images").
  assert result['metrics']['chance'] == {'test_accuracy': 0.1}
  assert result['test_size'] == 360 and isinstance(result['test_size'], int)
  assert result['curve_x'] == [1, 2] and result['title'] == 'toy'


def test_over_one_seed_is_that_run_unchanged():
  result = _common.over_seeds(_fake_result, [5])
  assert {k: v for k, v in result.items() if k not in ('seeds', 'seed_metrics')} == (
    _fake_result(5)
  )
  assert result['seeds'] == [5]
  assert result['seed_metrics']['rmsprop'] == {'test_accuracy': [0.9 + 5 / 100], 'steps': [50.0]}


def test_mean_over_seeds_refuses_what_it_cannot_average():
  with pytest.raises(ValueError, match='cannot average over seeds'):
    _common.mean_over_seeds([{'title': 'a'}, {'title': 'b'}])
  with pytest.raises(ValueError, match='different keys'):
    _common.mean_over_seeds([{'a': 1.0}, {'b': 1.0}])
  with pytest.raises(ValueError, match='different lengths'):
    _common.mean_over_seeds([[1.0, 2.0], [1.0]])


@pytest.mark.parametrize('name', SEEDED)
def test_run_runs_the_seeds_from_seed_on(name, monkeypatch):
  module = importlib.import_module(f'rmsprop_optax.demos.{name}')
  calls: list[tuple[int, bool]] = []

  def run_seed(*, fast: bool, seed: int, progress: bool) -> dict[str, Any]:
    calls.append((seed, fast))
    return _fake_result(seed)

  monkeypatch.setattr(module, 'run_seed', run_seed)
  result = module.run(fast=True, seed=3, num_seeds=4)
  assert calls == [(3, True), (4, True), (5, True), (6, True)]
  assert result['seeds'] == [3, 4, 5, 6]
  assert result['seed_metrics']['rmsprop']['test_accuracy'] == pytest.approx(
    [0.93, 0.94, 0.95, 0.96]
  )
  calls.clear()
  assert module.run(seed=7)['seeds'] == [7]  # default: one seed, as before num_seeds existed
  assert calls == [(7, False)]
  with pytest.raises(ValueError, match='num_seeds must be at least 1, got 0'):
    module.run(num_seeds=0)


def test_real_run_over_two_seeds_reaches_the_table_and_the_figure(monkeypatch, tmp_path):
  """Matrix factorisation, 100 steps, two optimizers, seeds 3 and 4: table and figure."""
  from rmsprop_optax.demos import matrix_factorization as mf

  monkeypatch.setattr(mf, 'STEPS_FAST', 100)
  three = mf.optimizers
  monkeypatch.setattr(
    mf, 'optimizers', lambda steps: {k: three(steps)[k] for k in ('rmsprop', 'sgd')}
  )
  result = mf.run(fast=True, seed=3, num_seeds=2)
  assert result['seeds'] == [3, 4]
  per_seed = result['seed_metrics']['rmsprop']['test_rmse']
  assert len(per_seed) == 2 and per_seed[0] != per_seed[1]  # the seed changes the run
  assert result['metrics']['rmsprop']['test_rmse'] == pytest.approx(sum(per_seed) / 2)
  text = cli.format_results([result])
  assert _cells(text.splitlines()[0])[3] == 'mean (min–max), 2 seeds'
  low, high = sorted(per_seed)
  assert f'({cli._fmt(low)}–{cli._fmt(high)})' in text
  assert 'held-out RMSE (lower is better), seed by seed:' in text
  assert text.count(' of 2 seeds') == 1  # two optimizers: one pair

  matplotlib = need('matplotlib')
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  from rmsprop_optax.demos import plotting

  fig = plotting.demo_figure(result)
  try:
    assert 'mean over 2 seeds (3–4)' in fig.get_suptitle()
  finally:
    plt.close(fig)
  one = {k: v for k, v in result.items() if k not in ('seeds', 'seed_metrics')}
  one_fig = plotting.demo_figure(one)
  try:
    assert 'mean over' not in one_fig.get_suptitle()
  finally:
    plt.close(one_fig)


# A result quoted in a docstring: ``python -m rmsprop_optax demo NAME --seeds N``, seeds A–B.
COMMAND = re.compile(r'``python -m rmsprop_optax demo (\w+) --seeds (\d+)``, seeds (\d+)–(\d+)')
SPREAD = re.compile(r'(\d[\d.]*) \((\d[\d.]*)–(\d[\d.]*)\)')  # mean (min–max)


@pytest.mark.parametrize('name', [*SEEDED, 'low_memory'])
def test_docstring_results_are_seed_spreads_of_a_named_command(name):
  """Each seeded demo quotes its results as a spread over >= 3 seeds of a command that runs.

  The numbers themselves depend on the CPU (the docstring says so); what is checked is that
  they are seed spreads: the command parses, names the seeds it covers, every quoted mean lies
  in its range, and every "on k of n seeds" count is over those seeds.
  """
  module = importlib.import_module(f'rmsprop_optax.demos.{name}')
  doc = ' '.join(module.__doc__.split())
  commands = COMMAND.findall(doc)
  assert len(commands) == 1, commands
  demo, n, first, last = commands[0]
  assert demo == name and int(n) >= 3 and int(last) - int(first) + 1 == int(n)
  args = cli._parse([demo, '--seeds', n, '--seed', first])
  assert (args.names, args.seeds, args.seed) == ([name], int(n), int(first))
  spreads = SPREAD.findall(doc)
  assert len(spreads) >= 3, spreads  # one per optimizer at least
  for mean, low, high in spreads:
    assert float(low) <= float(mean) <= float(high), (mean, low, high)
  counts = re.findall(r' on (\d+) of (\d+)', doc)
  assert counts or name == 'low_memory'  # it compares state formats, not optimizers
  assert all(int(k) <= int(total) == int(n) for k, total in counts), counts
