"""The command line (``python -m rmsprop_optax``) and the demos' results table.

The table is :func:`rmsprop_optax.demos.cli.format_results`, a pure function,
tested here on hand-made result dicts; one real ``--fast`` run of the cheapest
demo checks that what is printed is what ``results.md`` holds. The CLI runs
in-process through ``main([...])``; one subprocess checks what ``--help``
imports.
"""

from __future__ import annotations

import subprocess
import sys
import types
from typing import Any

import numpy as np
import pytest

import rmsprop_optax
from rmsprop_optax.__main__ import main
from rmsprop_optax.demos import cli

HEADER = '| demo | optimizer | metric | value | baseline |'


def _cells(line: str) -> list[str]:
  assert line.startswith('|') and line.endswith('|'), line
  return [cell.strip() for cell in line[1:-1].split('|')]


def _result(name: str = 'toy', **extra: Any) -> dict[str, Any]:
  result: dict[str, Any] = {
    'name': name,
    'metrics': {
      'rmsprop': {'test_accuracy': 0.980612, 'steps_to_1e-3': 412},
      'sgd': {'test_accuracy': 0.975, 'steps_to_1e-3': -1},
      'chance (majority class)': {'test_accuracy': 0.1028},
    },
    'curves': {'rmsprop': [1.0, 0.5], 'sgd': [1.0, 0.8]},
    'curve_label': 'loss',
  }
  result.update(extra)
  return result


# --- the results table ---------------------------------------------------------------------------


def test_table_columns_and_rows():
  lines = cli.format_results([_result()]).splitlines()
  assert _cells(lines[0]) == ['demo', 'optimizer', 'metric', 'value', 'baseline']
  assert set(lines[1]) == {'|', '-'}
  body = [_cells(line) for line in lines[2:]]
  assert body == [
    ['toy', 'rmsprop', 'test accuracy', '0.9806', 'chance (majority class) 0.1028'],
    ['', 'sgd', 'test accuracy', '0.975', ''],
    ['', 'rmsprop', 'steps to reach loss < 1e-3', '412', ''],
    ['', 'sgd', 'steps to reach loss < 1e-3', 'never', ''],
  ]
  # Padded so the columns line up in a terminal.
  assert len({len(line) for line in lines}) == 1


def test_table_never_only_for_step_counts():
  result = _result(metrics={'rmsprop': {'steps_to_1e-3': -1, 'final_x': -1, 'final_y': -1.0}})
  rows = {r[2]: r[3] for r in map(_cells, cli.format_results([result]).splitlines()[2:])}
  assert rows == {'steps to reach loss < 1e-3': 'never', 'final x': '-1', 'final y': '-1'}
  assert '-1 ' not in cli.format_results([_result()])


def test_table_baselines_fill_the_baseline_column():
  result = _result(
    name='char_lstm',
    metrics={
      'rmsprop': {'val_perplexity': 8.1301, 'val_bits_per_char': 3.02},
      'adam': {'val_perplexity': 8.375, 'val_bits_per_char': 3.07},
      'unigram baseline': {'val_perplexity': 29.987},
      'uniform baseline': {'val_perplexity': 97.0},
    },
    curves={'rmsprop': [], 'adam': []},
  )
  rows = [_cells(line) for line in cli.format_results([result]).splitlines()[2:]]
  assert [r[1] for r in rows] == ['rmsprop', 'adam', 'rmsprop', 'adam']  # No baseline rows.
  assert rows[0] == [
    'char_lstm',
    'rmsprop',
    'validation perplexity',
    '8.13',
    'unigram 29.99, uniform 97',
  ]
  assert rows[2][2:] == ['validation bits per character', '3.02', '']


@pytest.mark.parametrize(
  ('key', 'label'),
  [
    ('test_accuracy', 'test accuracy'),
    ('val_perplexity', 'validation perplexity'),
    ('greedy_mean_return', 'greedy mean return'),
    ('test_rmse', 'held-out RMSE'),
    ('steps_to_1e-3', 'steps to reach loss < 1e-3'),
    ('eff_lr_end_phase1', 'effective lr / lr, end of phase 1'),
    ('train_loss_last_5pct', 'training loss last 5%'),  # Not in the list: the generic rewrite.
  ],
)
def test_table_metric_names_are_readable(key, label):
  result = _result(metrics={'rmsprop': {key: 1.0}})
  assert _cells(cli.format_results([result]).splitlines()[2])[2] == label


@pytest.mark.parametrize(
  ('value', 'text'),
  [
    (0.980612, '0.9806'),
    (206.23, '206.2'),
    (97.0, '97'),
    (1000100.0, '1000100'),
    (3.0176e-18, '3.018e-18'),
    (12, '12'),
    (np.int64(7), '7'),
    (np.float32(0.5), '0.5'),
    (float('nan'), 'nan'),
  ],
)
def test_table_number_format(value, text):
  result = _result(metrics={'rmsprop': {'final_loss': value}})
  assert _cells(cli.format_results([result]).splitlines()[2])[3] == text


def test_table_escapes_a_pipe():
  result = _result(metrics={'a|b': {'final_loss': 1.0}}, curves={'a|b': []})
  assert r'| a\|b ' in cli.format_results([result])


def test_table_one_per_demo():
  text = cli.format_results([_result('first'), _result('second')])
  tables = text.split('\n\n')
  assert len(tables) == 2
  for name, table in zip(('first', 'second'), tables, strict=True):
    lines = table.splitlines()
    assert ' '.join(lines[0].split()) == HEADER
    assert _cells(lines[2])[0] == name
    assert all(_cells(line)[0] == '' for line in lines[3:])


# --- the table over several seeds ---------------------------------------------------------------


def _seeded(name: str = 'toy', **seed_metrics: Any) -> dict[str, Any]:
  """A result over len(seeds) seeds, as ``_common.over_seeds`` returns it (means in metrics)."""
  per_seed = seed_metrics or {
    'rmsprop': {'test_accuracy': [0.98, 0.97, 0.99], 'test_loss': [0.08, 0.1, 0.06]},
    'sgd': {'test_accuracy': [0.96, 0.975, 0.95], 'test_loss': [0.12, 0.11, 0.13]},
    'chance (majority class)': {'test_accuracy': [0.1028, 0.1028, 0.1028]},
  }
  n = len(next(iter(next(iter(per_seed.values())).values())))
  return {
    'name': name,
    'metrics': {
      opt: {m: sum(v) / len(v) for m, v in metrics.items()} for opt, metrics in per_seed.items()
    },
    'curves': {opt: [1.0, 0.5] for opt in per_seed if not opt.startswith(('chance', 'global'))},
    'seeds': list(range(4, 4 + n)),
    'seed_metrics': per_seed,
  }


@pytest.mark.parametrize(
  ('values', 'text'),
  [
    ([1.0, 2.0, 6.0], '3 (1–6)'),  # mean 9 / 3
    ([0.25, 0.5, 0.5, 0.75], '0.5 (0.25–0.75)'),
    ([0.9611, 0.9778], '0.9694 (0.9611–0.9778)'),  # mean 0.96945, 4 digits
    ([-2.0, 1.0], '-0.5 (-2–1)'),
    ([22.5, 22.5, 22.5], '22.5'),  # the same on every seed: once, no range
    ([12, 14], '13 (12–14)'),
  ],
)
def test_format_spread_is_mean_min_max(values, text):
  assert cli.format_spread(values) == text


def test_format_spread_counts_the_seeds_that_never_reached_a_threshold():
  assert (
    cli.format_spread([100, -1, 300], 'steps_to_1e-3') == '200 (100–300), never on 1 of 3 seeds'
  )
  assert cli.format_spread([-1, -1], 'steps_to_1e-3') == 'never'


def test_table_over_seeds_shows_mean_and_range_with_the_number_of_seeds():
  lines = cli.format_results([_seeded()]).split('\n\n')[0].splitlines()
  assert _cells(lines[0]) == ['demo', 'optimizer', 'metric', 'mean (min–max), 3 seeds', 'baseline']
  body = [_cells(line) for line in lines[2:]]
  assert body == [
    ['toy', 'rmsprop', 'test accuracy', '0.98 (0.97–0.99)', 'chance (majority class) 0.1028'],
    ['', 'sgd', 'test accuracy', '0.9617 (0.95–0.975)', ''],  # 2.885 / 3 = 0.96167
    ['', 'rmsprop', 'test loss', '0.08 (0.06–0.1)', ''],
    ['', 'sgd', 'test loss', '0.12 (0.11–0.13)', ''],
  ]


def test_table_over_one_seed_is_the_single_seed_table():
  one = _seeded(rmsprop={'test_accuracy': [0.980612]}, sgd={'test_accuracy': [0.975]})
  plain = {k: v for k, v in one.items() if k not in ('seeds', 'seed_metrics')}
  assert cli.format_results([one]) == cli.format_results([plain])
  assert _cells(cli.format_results([one]).splitlines()[0])[3] == 'value'
  assert 'beats' not in cli.format_results([one])


def test_ranking_line_counts_the_seeds_each_optimizer_wins():
  result = _seeded(
    rmsprop={'test_accuracy': [0.98, 0.97, 0.99, 0.96]},
    sgd={'test_accuracy': [0.96, 0.975, 0.95, 0.96]},  # rmsprop wins 0 and 2, loses 1, ties 3
    adam={'test_accuracy': [0.99, 0.98, 0.995, 0.97]},
  )
  text = cli.format_results([result])
  table, ranking = text.split('\n\n')
  assert ranking.splitlines() == [
    'test accuracy (higher is better), seed by seed:',
    '- adam beats rmsprop on 4 of 4 seeds',
    '- adam beats sgd on 4 of 4 seeds',
    '- rmsprop beats sgd on 2 of 4 seeds, tied on 1',
  ]
  assert cli.rankings(result) == ranking.splitlines()


def test_ranking_lower_is_better_and_only_optimizers():
  result = _seeded(
    rmsprop={'test_rmse': [0.43, 0.44, 0.42]},
    sgd={'test_rmse': [1.0, 0.41, 1.1]},  # mean 0.837: second; beats rmsprop on seed 1 only
    **{'global mean baseline': {'test_rmse': [0.1, 0.1, 0.1]}},  # a baseline: not ranked
  )
  assert cli.rankings(result) == [
    'held-out RMSE (lower is better), seed by seed:',
    '- rmsprop beats sgd on 2 of 3 seeds',
  ]
  # A metric not ranked (here the step count) gives no line; neither does one seed.
  assert (
    cli.rankings(_seeded(rmsprop={'final_loss': [1.0, 2.0]}, sgd={'final_loss': [3.0, 1.0]})) == []
  )
  assert cli.rankings(_seeded(rmsprop={'test_rmse': [0.4]}, sgd={'test_rmse': [1.0]})) == []


def test_deterministic_demo_says_it_has_no_seed():
  lines = cli.format_results([_result(deterministic=True)]).splitlines()
  assert _cells(lines[0])[3] == 'value (deterministic: no seed)'
  assert _cells(lines[2])[3] == '0.9806'


# --- the demo command ----------------------------------------------------------------------------


def test_demo_fast_run_prints_what_results_md_holds(tmp_path, capsys):
  out = tmp_path / 'out'
  assert main(['demo', 'quadratic', '--fast', '--out', str(out)]) == 0
  printed = capsys.readouterr().out
  table = (out / 'results.md').read_text()
  assert table in printed
  lines = table.splitlines()
  assert _cells(lines[0])[3] == 'value (deterministic: no seed)'
  rows = [_cells(line) for line in lines[2:]]
  assert rows[0][0] == 'quadratic'
  assert {r[1] for r in rows} == {'sgd', 'rmsprop'}
  assert 'final loss' in {r[2] for r in rows}
  assert all(r[3] for r in rows)
  assert (out / 'quadratic.png').exists()


def test_demo_runs_several_names_once_each(tmp_path, capsys, monkeypatch):
  calls: list[str] = []

  def fake(name: str) -> types.SimpleNamespace:
    def run(*, fast: bool, seed: int, progress: bool) -> dict[str, Any]:
      calls.append(name)
      return _result(name)

    return types.SimpleNamespace(run=run)

  monkeypatch.setattr(cli, '_load', fake)
  monkeypatch.setattr(cli.plotting, 'plot_result', lambda result, path: None)
  out = tmp_path / 'out'
  assert main(['demo', 'digits', 'dqn', 'digits', '--fast', '--out', str(out)]) == 0
  assert calls == ['digits', 'dqn']
  table = (out / 'results.md').read_text()
  assert table == cli.format_results([_result('digits'), _result('dqn')]) + '\n'
  assert table in capsys.readouterr().out

  calls.clear()
  assert main(['demo', 'dqn', 'all', '--out', str(out)]) == 0
  assert calls == [n for n in cli.DEMOS if n not in cli.NOT_IN_ALL]


def test_demo_seeds_reach_the_demos_that_compare_seeds(tmp_path, capsys, monkeypatch):
  calls: list[tuple[str, int, int | None]] = []

  def fake(name: str) -> types.SimpleNamespace:
    def run(*, fast: bool, seed: int, progress: bool, num_seeds: int | None = None) -> dict:
      calls.append((name, seed, num_seeds))
      return _result(name)

    return types.SimpleNamespace(run=run)

  monkeypatch.setattr(cli, '_load', fake)
  monkeypatch.setattr(cli.plotting, 'plot_result', lambda result, path: None)
  out = str(tmp_path / 'out')
  assert main(['demo', 'low_memory', 'sweep', '--seeds', '10', '--seed', '4', '--out', out]) == 0
  assert calls == [('low_memory', 4, 10), ('sweep', 4, 10)]
  assert 'Results (full mode, seeds 4-13, ' in capsys.readouterr().out
  calls.clear()
  assert main(['demo', 'low_memory', '--out', out]) == 0
  assert calls == [('low_memory', 0, None)]  # the demo's own default
  assert 'Results (full mode, seeds from 0, ' in capsys.readouterr().out
  calls.clear()
  seeded = ['digits', 'char_lstm', 'dqn', 'matrix_factorization']
  assert main(['demo', *seeded, '--seeds', '3', '--seed', '2', '--out', out]) == 0
  assert calls == [(name, 2, 3) for name in seeded]
  assert 'Results (full mode, seeds 2-4, ' in capsys.readouterr().out
  calls.clear()
  assert main(['demo', 'digits', '--out', out]) == 0
  assert calls == [('digits', 0, None)]  # one seed, as before --seeds existed
  assert 'Results (full mode, seed 0, ' in capsys.readouterr().out


def test_demo_seeds_with_all_runs_the_deterministic_demos_once(tmp_path, capsys, monkeypatch):
  calls: list[tuple[str, int | None]] = []

  def fake(name: str) -> types.SimpleNamespace:
    if name in cli.SEEDLESS:  # no num_seeds: passing one would raise TypeError

      def run(*, fast: bool, seed: int, progress: bool) -> dict[str, Any]:
        calls.append((name, None))
        return _result(name, deterministic=True)

    else:

      def run(*, fast: bool, seed: int, progress: bool, num_seeds: int | None = None) -> dict:
        calls.append((name, num_seeds))
        return _result(name)

    return types.SimpleNamespace(run=run)

  monkeypatch.setattr(cli, '_load', fake)
  monkeypatch.setattr(cli.plotting, 'plot_result', lambda result, path: None)
  assert main(['demo', '--seeds', '3', '--out', str(tmp_path)]) == 0
  every = [n for n in cli.DEMOS if n not in cli.NOT_IN_ALL]
  assert calls == [(n, None if n in cli.SEEDLESS else 3) for n in every]
  assert cli.SEEDLESS == {'quadratic', 'rosenbrock', 'adagrad_vs_rmsprop'}
  assert cli.TAKE_SEEDS == set(cli.DEMOS) - cli.SEEDLESS


@pytest.mark.parametrize(
  ('args', 'message'),
  [
    (
      ['quadratic', '--seeds', '3'],
      '--seeds does not apply to quadratic: quadratic, rosenbrock, adagrad_vs_rmsprop are '
      'deterministic and have no random seed; --seeds applies to digits, char_lstm, dqn, '
      'matrix_factorization, sweep, low_memory',
    ),
    (['digits', 'rosenbrock', '--seeds', '2'], '--seeds does not apply to rosenbrock: '),
    (['adagrad_vs_rmsprop', 'all', '--seeds', '2'], 'does not apply to adagrad_vs_rmsprop: '),
    (['low_memory', '--seeds', '0'], 'argument --seeds: must be at least 1, got 0'),
    (['low_memory', '--seeds', 'ten'], "argument --seeds: not a whole number: 'ten'"),
  ],
)
def test_demo_seeds_errors(capsys, args, message):
  with pytest.raises(SystemExit) as exc:
    main(['demo', *args])
  assert exc.value.code == 2
  assert message in capsys.readouterr().err


def test_demo_help_says_which_demos_take_seeds(capsys):
  with pytest.raises(SystemExit):
    main(['demo', '--help'])
  text = ' '.join(capsys.readouterr().out.split())
  assert 'quadratic, rosenbrock, adagrad_vs_rmsprop are deterministic and have no random seed' in (
    text
  )
  assert 'mean (min-max)' in text
  seeded = '(digits, char_lstm, dqn, matrix_factorization, sweep, low_memory; without it they'
  assert seeded + ' run one seed,' in text


def test_demo_unknown_name_lists_the_choices(capsys):
  with pytest.raises(SystemExit) as exc:
    main(['demo', 'digits', 'nope'])
  assert exc.value.code == 2
  err = capsys.readouterr().err
  assert "unknown demo 'nope'" in err
  for name in ('all', *cli.DEMOS):
    assert name in err


@pytest.mark.parametrize(
  ('args', 'reported'),
  [
    (['--steps', '10'], '--steps 10'),
    (['digits', '--steps', '10'], '--steps 10'),
    (['--steps=10'], '--steps=10'),
    (['--steps', '10', '--out', '10'], '--steps 10'),
  ],
)
def test_demo_unknown_flag_is_reported_as_a_flag(capsys, args, reported):
  with pytest.raises(SystemExit) as exc:
    main(['demo', *args])
  assert exc.value.code == 2
  err = capsys.readouterr().err
  assert f'unrecognized arguments: {reported}\n' in err
  assert 'invalid choice' not in err and 'unknown demo' not in err


# --- the top-level command -----------------------------------------------------------------------


def test_version(capsys):
  with pytest.raises(SystemExit) as exc:
    main(['--version'])
  assert exc.value.code == 0
  assert capsys.readouterr().out == f'rmsprop_optax {rmsprop_optax.__version__}\n'


def test_bare_call_prints_the_help(capsys):
  assert main([]) == 0
  captured = capsys.readouterr()
  assert captured.out.startswith('usage: python -m rmsprop_optax')
  for command in ('demo', 'bench', 'parity'):
    assert f'  {command} ' in captured.out
  assert 'required' not in captured.out + captured.err


def test_unknown_command(capsys):
  with pytest.raises(SystemExit) as exc:
    main(['nope'])
  assert exc.value.code == 2
  assert "invalid choice: 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize('command', [[], ['demo'], ['bench'], ['parity']])
def test_help_has_no_rest_markup(capsys, command):
  with pytest.raises(SystemExit) as exc:
    main([*command, '--help'])
  assert exc.value.code == 0
  out = capsys.readouterr().out
  assert out.startswith('usage: python -m rmsprop_optax')
  assert '``' not in out


def test_help_does_not_import_the_heavy_dependencies():
  probe = (
    'import sys\n'
    'from rmsprop_optax.__main__ import main\n'
    'for argv in (["--help"], ["demo", "--help"]):\n'
    '  try:\n'
    '    main(argv)\n'
    '  except SystemExit:\n'
    '    pass\n'
    'heavy = ("torch", "flax", "matplotlib", "gymnax")\n'
    'print(sorted(m for m in heavy if m in sys.modules))\n'
  )
  proc = subprocess.run(
    [sys.executable, '-c', probe], capture_output=True, text=True, timeout=300, check=False
  )
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.strip().splitlines()[-1] == '[]', proc.stdout
