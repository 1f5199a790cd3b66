"""The README's Python examples run as written (docs that match the code)."""

from __future__ import annotations

import contextlib
import io
import pathlib
import re

import numpy as np
import pytest

README = pathlib.Path(__file__).resolve().parents[1] / 'README.md'
BLOCKS = re.findall(r'```python\n(.*?)```', README.read_text(), re.S)


def test_readme_has_examples():
  assert BLOCKS


@pytest.mark.parametrize('index', range(len(BLOCKS)))
def test_readme_example_runs(index):
  exec(compile(BLOCKS[index], f'README.md[python block {index}]', 'exec'), {})


def _quick_start() -> str:
  return next(block for block in BLOCKS if 'loss after' in block)


def test_quick_start_prints_what_its_comments_say():
  """The quick start's printed values against its ``# ...`` comments and the known answer.

  References: the data are made from w = [1, -2, 0.5], so w is known exactly; the loss before
  training is mean(y**2), recomputed here. Tolerances: the README rounds w to 3 decimals (the
  run ends within 1e-4 of the answer on any CPU, well inside the rounding), the loss before to 4
  digits (rtol 1e-3); the loss after differs between CPUs, so its comment states a bound.
  """
  block = _quick_start()
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    exec(compile(block, 'README.md[quick start]', 'exec'), {})
  printed = out.getvalue().splitlines()
  comments = [line.split('# ', 1)[1] for line in block.splitlines() if line.startswith('print(')]
  assert len(printed) == len(comments) == 3, (printed, comments)
  before, after, w = printed
  # Loss before: as commented, and mean(y**2) for y = x @ [1, -2, 0.5].
  import jax

  x = np.asarray(jax.random.normal(jax.random.key(0), (64, 3)), np.float64)
  y = x @ np.array([1.0, -2.0, 0.5])
  assert before == comments[0]
  np.testing.assert_allclose(float(before.split(':')[1]), np.mean(y**2), rtol=1e-3)
  # Loss after: below the bound the comment states.
  bound = float(re.search(r'below ([0-9.e+-]+)\)', comments[1]).group(1))
  assert float(after.split(':')[1]) < bound, (after, comments[1])
  # w: exactly the printed answer, which is the true w at 3 decimals.
  assert w == comments[2] == 'w = [1.0, -2.0, 0.5]', (w, comments[2])
