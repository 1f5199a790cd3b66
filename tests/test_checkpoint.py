"""Checkpoints: save mid-training with orbax-checkpoint, resume in a fresh process.

For every optimizer in ``_optimizer_zoo`` (every preset, each with momentum
and centering where it has them, and ``rmsprop`` with a scheduled learning
rate and momentum, centered, Nesterov: a state with several int32 counts,
NamedTuples and ``EmptyState``): train ``SAVE_AT`` steps, save params,
optimizer state and step with ``ocp.StandardCheckpointer``; a fresh Python
process (``tests/_checkpoint_worker.py``) restores them against an abstract
target from ``jax.eval_shape(opt.init, params)`` and trains on to ``TOTAL``.
Reference: the same ``TOTAL`` steps uninterrupted in this process. Tolerance:
none, bit for bit (same compiled step, same inputs).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import _checkpoint_worker as worker
import _optimizer_zoo as zoo
import jax
import numpy as np
import pytest
from _harness import bits, need, worker_env

ocp = need('orbax.checkpoint')

TESTS = Path(__file__).resolve().parent
PACKAGE = TESTS.parent / 'rmsprop_optax'
TIMEOUT_S = 600
NAMES = tuple(zoo.OPTIMIZERS)


@pytest.fixture(scope='module')
def resumed(tmp_path_factory):
  """Saves every optimizer's mid-training checkpoint, resumes all in one fresh process."""
  directory = tmp_path_factory.mktemp('checkpoints')
  checkpointer = ocp.StandardCheckpointer()
  uninterrupted = {}
  for name in NAMES:
    opt = zoo.make(name)
    train = worker.make_train(opt)
    params = worker.init_params()
    start = jax.numpy.zeros((), jax.numpy.int32)
    p, s, step = train(params, opt.init(params), start, worker.SAVE_AT)
    checkpointer.save(directory / name / 'mid', {'params': p, 'opt_state': s, 'step': step})
    uninterrupted[name] = train(p, s, step, worker.TOTAL - worker.SAVE_AT)
  checkpointer.wait_until_finished()
  env = worker_env()
  proc = subprocess.run(
    [sys.executable, str(TESTS / '_checkpoint_worker.py'), str(directory), *NAMES],
    env=env,
    capture_output=True,
    text=True,
    timeout=TIMEOUT_S,
  )
  if proc.returncode != 0:
    pytest.fail(f'the resuming process failed:\n{proc.stderr[-6000:]}', pytrace=False)
  return directory, uninterrupted


@pytest.mark.parametrize('name', NAMES)
def test_resume_in_fresh_process_is_bit_identical(resumed, name):
  directory, uninterrupted = resumed
  opt = zoo.make(name)
  target = worker.abstract_target(opt)
  final = ocp.StandardCheckpointer().restore(directory / name / 'final', target)
  params, state, step = uninterrupted[name]
  assert int(final['step']) == int(step) == worker.TOTAL
  expected = {'params': params, 'opt_state': state}
  got = {'params': final['params'], 'opt_state': final['opt_state']}
  assert jax.tree.structure(got) == jax.tree.structure(expected)
  for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(got)[0], jax.tree.leaves(expected)):
    assert a.dtype == b.dtype, (jax.tree_util.keystr(path), a.dtype, b.dtype)
    # Bit for bit, not approximately.
    np.testing.assert_array_equal(*bits((a, b)), err_msg=jax.tree_util.keystr(path))
  # The run really moved: the resumed part changed the params.
  assert not np.array_equal(np.asarray(final['params']['w']), np.asarray(worker.init_params()['w']))


def test_checkpoint_files_hold_no_pickle(resumed):
  """Orbax writes JSON and array stores; no file starts with a pickle header."""
  directory, _ = resumed
  files = [f for f in Path(directory).rglob('*') if f.is_file()]
  assert files
  for f in files:
    head = f.read_bytes()[:2]
    assert not (len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5), f


FORBIDDEN_MODULES = {'pickle', '_pickle', 'cPickle', 'cloudpickle', 'dill', 'shelve', 'joblib'}


def test_no_pickle_in_the_package():
  """No module of the package imports, names or enables pickle (source scan)."""
  sources = sorted(PACKAGE.rglob('*.py'))
  assert len(sources) >= 5, sources
  problems = []
  for path in sources:
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
      where = f'{path.relative_to(PACKAGE.parent)}:{getattr(node, "lineno", "?")}'
      if isinstance(node, ast.Import):
        problems += [where for a in node.names if a.name.split('.')[0] in FORBIDDEN_MODULES]
      elif isinstance(node, ast.ImportFrom):
        if (node.module or '').split('.')[0] in FORBIDDEN_MODULES:
          problems.append(where)
      elif isinstance(node, ast.Name) and node.id in FORBIDDEN_MODULES:
        problems.append(where)
      elif isinstance(node, ast.Attribute) and node.attr in FORBIDDEN_MODULES:
        problems.append(where)
      elif isinstance(node, ast.keyword) and node.arg == 'allow_pickle':
        if not (isinstance(node.value, ast.Constant) and node.value.value is False):
          problems.append(where)
      elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        if node.func.id in {'__import__', 'import_module'} and any(
          isinstance(a, ast.Constant) and str(a.value).split('.')[0] in FORBIDDEN_MODULES
          for a in node.args
        ):
          problems.append(where)
  assert not problems, f'pickle in the package at {problems}'


def test_pickle_scan_can_fail(tmp_path):
  """The scanner above flags what it should (guards against a vacuous test)."""
  snippet = 'import pickle\nimport numpy as np\nnp.load("x", allow_pickle=True)\n'
  tree = ast.parse(snippet)
  names = [n.names[0].name for n in ast.walk(tree) if isinstance(n, ast.Import)]
  keywords = [k for k in ast.walk(tree) if isinstance(k, ast.keyword) and k.arg == 'allow_pickle']
  assert 'pickle' in names and keywords and keywords[0].value.value is True
