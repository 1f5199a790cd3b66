"""Runs every docstring example of the package, one test per module.

Every module of ``rmsprop_optax`` is imported (``pkgutil.walk_packages``) and
its examples run with :mod:`doctest` (``ELLIPSIS``, ``NORMALIZE_WHITESPACE``).
Nothing is skipped: a module whose import needs a package of the ``test``
extra that is missing fails, since that extra installs everything.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import rmsprop_optax

OPTIONS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
# Fewer examples than this over the whole package means the finder is broken
# (or the examples were deleted), not that everything passed.
MIN_EXAMPLES = 10


def _module_names() -> list[str]:
  names = [rmsprop_optax.__name__]
  for info in pkgutil.walk_packages(rmsprop_optax.__path__, prefix=f'{rmsprop_optax.__name__}.'):
    names.append(info.name)
  return sorted(names)


MODULES = _module_names()


def _count(name: str) -> int:
  """The number of examples :func:`doctest.testmod` would run in module ``name``."""
  module = importlib.import_module(name)
  return sum(len(test.examples) for test in doctest.DocTestFinder().find(module))


def test_finds_the_modules():
  # The walk must see subpackages, or the tests below could pass by running
  # nothing.
  for name in ('rmsprop_optax.diagnostics', 'rmsprop_optax.presets', 'rmsprop_optax.demos.cli'):
    assert name in MODULES, MODULES


def test_examples_exist():
  counts = {name: _count(name) for name in MODULES}
  total = sum(counts.values())
  assert total >= MIN_EXAMPLES, f'only {total} docstring examples found: {counts}'
  for name in ('rmsprop_optax.diagnostics', 'rmsprop_optax.presets', 'rmsprop_optax.parity'):
    assert counts[name] > 0, f'{name} has no docstring examples'


@pytest.mark.parametrize('name', MODULES)
def test_docstring_examples(name):
  module = importlib.import_module(name)
  result = doctest.testmod(module, optionflags=OPTIONS, report=True, verbose=False)
  # The failures' details are printed above (pytest shows them on failure).
  assert result.failed == 0, f'{name}: {result.failed} of {result.attempted} examples failed'
