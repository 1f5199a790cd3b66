"""``python -m rmsprop_optax parity``: the table, missing frameworks, failures.

Reference: ``optax.rmsprop`` (always installed) for the passing rows; a
deliberately wrong transformation for the failing row. Tolerance: the
bounds the table prints, which the test suite's ``_harness.BOUNDS`` are.
"""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import numpy as np
import optax
import pytest
from _harness import BOUNDS, FLOAT32_BOUND, FLOAT64_BOUND, max_rel_error

from rmsprop_optax import parity

CLI_STEPS = '20'  # a short run: these tests check the table, not the parity


def test_table_for_optax(capsys):
  code = parity.main(['--framework', 'optax', '--steps', CLI_STEPS, '--match', 'defaults'])
  out = capsys.readouterr().out
  assert code == 0
  lines = out.splitlines()
  header = next(line for line in lines if line.startswith('| framework'))
  assert 'float32 (<= 1e-05)' in header and 'float64 (<= 1e-10)' in header
  row = next(line for line in lines if line.startswith('| optax') and 'defaults' in line)
  cells = [c.strip() for c in row.strip('|').split('|')]
  f32, f64, status = float(cells[2]), float(cells[3]), cells[4]
  assert 0 <= f32 <= FLOAT32_BOUND and 0 <= f64 <= FLOAT64_BOUND
  assert status == 'pass'
  assert '1 passed, 0 failed' in out


def test_a_missing_framework_that_was_asked_for_exits_non_zero(capsys, monkeypatch):
  monkeypatch.setattr(parity, 'installed', lambda fw: fw != 'torch')
  code = parity.main(['--framework', 'torch', '--steps', '2'])
  captured = capsys.readouterr()
  assert code == 2
  assert 'not installed: torch' in captured.out and '0 passed, 0 failed' in captured.out
  # It says how to install the framework, and the error names what was asked for.
  assert 'pip install' in captured.out and 'torch==' in captured.out
  assert '--framework torch' in captured.err and 'cannot be imported' in captured.err


def test_a_missing_framework_in_the_default_run_is_reported_not_failed(capsys, monkeypatch):
  monkeypatch.setattr(parity, 'installed', lambda fw: fw == 'optax')
  code = parity.main(['--steps', '2', '--match', 'defaults'])
  out = capsys.readouterr().out
  assert code == 0
  assert 'not installed: bitsandbytes, keras, torch' in out
  for fw in ('torch', 'keras', 'bitsandbytes'):
    assert f'{fw} is not installed; to compare with it: pip install' in out
  assert 'rmsprop_optax[test]' in out


def test_install_hints_name_the_pins_of_the_test_extra():
  # The hints must not drift from pyproject.toml, where the test extra pins these versions.
  pyproject = (pathlib.Path(__file__).resolve().parents[1] / 'pyproject.toml').read_text()
  for fw, hint in parity.INSTALL_HINTS.items():
    requirement = re.search(r"pip install '([^']+)'", hint)
    assert requirement and requirement.group(1).startswith(fw), hint
    if fw != 'optax':  # optax is a core dependency, unpinned
      assert f'"{requirement.group(1)}"' in pyproject, (fw, hint)


def test_a_wrong_preset_fails_the_table():
  wrong = parity.Case(
    'optax',
    'eps outside (wrong)',
    lambda: optax.rmsprop(1e-2, eps=0.1, eps_in_sqrt=False),
    lambda problem, steps: parity.run_optax(optax.rmsprop(1e-2, eps=0.1), problem, steps),
  )
  rows = parity.run_matrix(['optax'], ['float32'], 20, cases=[wrong])
  assert [r.status for r in rows] == ['FAIL']
  assert rows[0].errors['float32'] > FLOAT32_BOUND
  assert 'FAIL' in parity.format_table(rows, ['float32'])


def test_the_table_uses_the_suites_bounds_and_metric():
  """The CLI's bounds and error are the ones the parity tests assert with."""
  assert BOUNDS is parity.BOUNDS  # defined once, in parity
  rng = np.random.default_rng(0)
  expected = [{'w': rng.normal(size=(3, 2)), 'b': rng.normal(size=2)} for _ in range(4)]
  actual = [{k: v * (1 + 1e-6 * rng.normal(size=v.shape)) for k, v in e.items()} for e in expected]
  want = max_rel_error(actual, expected)
  assert 1e-8 < want < 1e-4
  assert parity.trajectory_error(actual, expected) == pytest.approx(want, rel=1e-12)
  assert parity.relative_error(actual[1], expected[1]) == pytest.approx(
    max_rel_error(actual[1], expected[1]), rel=1e-12
  )


def test_module_entry_point():
  """Through the dispatcher in rmsprop_optax/__main__.py, in a fresh interpreter."""
  cmd = [
    sys.executable,
    '-m',
    'rmsprop_optax',
    'parity',
    '--framework',
    'optax',
    '--dtype',
    'float32',
    '--steps',
    '5',
    '--match',
    'defaults',
  ]
  proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
  assert proc.returncode == 0, proc.stderr
  assert '| optax' in proc.stdout and 'pass' in proc.stdout
  # Importing the package (and the parity module) must not import torch or keras.
  probe = (
    'import sys, rmsprop_optax, rmsprop_optax.parity; '
    'print(any(m in sys.modules for m in ("torch", "keras")))'
  )
  proc = subprocess.run(
    [sys.executable, '-c', probe], capture_output=True, text=True, timeout=300, check=False
  )
  assert proc.stdout.strip() == 'False', proc.stderr


def test_bitsandbytes_rows_pass(capsys):
  """The four bitsandbytes rows (8-bit and 32-bit state, lr set each step, decay) pass."""
  code = parity.main(['--framework', 'bitsandbytes', '--steps', '60'])
  out = capsys.readouterr().out
  assert code == 0, out
  rows = [line for line in out.splitlines() if line.startswith('| bitsandbytes')]
  assert len(rows) == 4 and all(line.rstrip(' |').endswith('pass') for line in rows), out
  assert '4 passed, 0 failed' in out
