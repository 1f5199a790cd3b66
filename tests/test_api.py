"""The public surface: names, version, typing marker, CLI entry point."""

from __future__ import annotations

import importlib.metadata
import inspect
import pathlib
import re
import subprocess
import sys

import optax

import rmsprop_optax
from rmsprop_optax import diagnostics, presets, schedules, sweep

PUBLIC = {
  'Quantized',
  'QuantizedArray',
  'QuantizedTree',
  'ScaleByCenteredRmsState',
  'ScaleByRmsState',
  'ScheduledTraceState',
  'StepMemory',
  'effective_learning_rate',
  'find_rms_state',
  'memory_length',
  'presets',
  'quantized',
  'rmsprop',
  'scale_by_centered_rms',
  'scale_by_rms',
  'step_memory',
  'schedules',
}


def test_all_is_explicit_and_importable():
  assert set(rmsprop_optax.__all__) == PUBLIC
  for name in rmsprop_optax.__all__:
    obj = getattr(rmsprop_optax, name)
    # Defined by this package under its public name: a placeholder (None) or a
    # name bound to optax's own function or class instead of ours fails here.
    if inspect.ismodule(obj):
      assert obj.__name__ == f'rmsprop_optax.{name}', (name, obj)
    else:
      assert callable(obj), (name, obj)
      assert obj.__module__.startswith('rmsprop_optax.'), (name, obj.__module__)
      assert obj.__name__ == name, (name, obj.__name__)


def test_version_matches_the_installed_metadata():
  assert rmsprop_optax.__version__ == importlib.metadata.version('rmsprop_optax')


def test_py_typed_marker_ships():
  assert (pathlib.Path(rmsprop_optax.__file__).parent / 'py.typed').exists()


def test_public_signatures():
  """The keyword names and defaults users call: changing one breaks their code."""
  sig = inspect.signature(rmsprop_optax.rmsprop)
  want = {
    'decay': 0.9,
    'eps': 1e-8,
    'momentum': None,
    'nesterov': False,
    'centered': False,
    'mean_decay': None,
    'bias_correction': False,
    'eps_in_sqrt': True,
    'initial_scale': 0.0,
    'lr_in_momentum': True,
    'weight_decay': None,  # None: no weight-decay step at all
    'decoupled_weight_decay': False,
    'weight_decay_mask': None,
    'maximize': False,
    'accumulator_dtype': None,
  }
  assert {k: sig.parameters[k].default for k in want} == want
  assert sig.parameters['learning_rate'].default is inspect.Parameter.empty
  for fn in (rmsprop_optax.scale_by_rms, rmsprop_optax.scale_by_centered_rms):
    sig = inspect.signature(fn)
    assert sig.parameters['decay'].default == 0.9
    assert sig.parameters['eps'].default == 1e-8
    assert sig.parameters['eps_in_sqrt'].kind is inspect.Parameter.KEYWORD_ONLY


def _public_functions():
  modules = (rmsprop_optax, presets, schedules, sweep, diagnostics)
  for module in modules:
    names = getattr(module, '__all__', [n for n in vars(module) if not n.startswith('_')])
    for name in names:
      obj = getattr(module, name)
      if inspect.isfunction(obj) and obj.__module__.startswith('rmsprop_optax'):
        yield f'{module.__name__}.{name}', obj


def test_public_functions_are_typed_without_any():
  """Every public parameter and return has a type, and none is a bare ``Any``."""
  functions = dict(_public_functions())
  assert {'rmsprop_optax.memory_length', 'rmsprop_optax.sweep.lr_sweep'} <= set(functions)
  for name, fn in functions.items():
    sig = inspect.signature(fn)
    annotations = {p: v.annotation for p, v in sig.parameters.items()}
    annotations['return'] = sig.return_annotation
    for param, annotation in annotations.items():
      assert annotation is not inspect.Parameter.empty, (name, param)
      text = annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)
      assert not re.search(r'\bAny\b', text), (name, param, text)


def test_transformations_are_optax_gradient_transformations():
  assert isinstance(rmsprop_optax.scale_by_rms(), optax.GradientTransformation)
  assert isinstance(rmsprop_optax.rmsprop(1e-3), optax.GradientTransformationExtraArgs)


def test_cli_help_lists_the_commands():
  out = subprocess.run(
    [sys.executable, '-m', 'rmsprop_optax', '--help'], capture_output=True, text=True, check=True
  ).stdout
  for command in ('demo', 'bench', 'parity'):
    assert command in out
