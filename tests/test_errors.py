"""Bad input gets a clear error naming the argument or the path, never a silent wrong answer.

Hyperparameters are checked when the optimizer is built (``ValueError`` naming
the argument and showing the value; ``TypeError`` for the wrong kind of value);
updates are checked when ``update`` is traced (``ValueError`` naming the first
mismatching path of the tree, ``TypeError`` for integer or boolean gradients).
What happens with non-finite gradients, saturated counts and 16-bit params is
in ``test_faults.py``.
"""

from __future__ import annotations

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import rmsprop_optax
from rmsprop_optax import presets

NAN = math.nan
rms = rmsprop_optax.scale_by_rms
centered_rms = rmsprop_optax.scale_by_centered_rms
rmsprop = rmsprop_optax.rmsprop

# -- hyperparameters, checked when the optimizer is built ---------------------

# (constructor, keyword arguments, the argument the error names, the value it shows)
BAD_HYPERPARAMETERS = [
  (rms, {'decay': -0.1}, 'decay', '-0.1'),
  (rms, {'decay': 1.5}, 'decay', '1.5'),
  (rms, {'decay': 2.0}, 'decay', '2.0'),
  (rms, {'decay': NAN}, 'decay', 'nan'),
  (rms, {'eps': -1e-8}, 'eps', '-1e-08'),
  (rms, {'initial_scale': -1.0}, 'initial_scale', '-1.0'),
  (centered_rms, {'decay': 2.0}, 'decay', '2.0'),
  (centered_rms, {'mean_decay': -0.5}, 'mean_decay', '-0.5'),
  (centered_rms, {'mean_decay': 1.01}, 'mean_decay', '1.01'),
  (centered_rms, {'eps': -1.0}, 'eps', '-1.0'),
  (rmsprop, {'learning_rate': -1e-3}, 'learning_rate', '-0.001'),
  (rmsprop, {'learning_rate': NAN}, 'learning_rate', 'nan'),
  (rmsprop, {'learning_rate': 1e-3, 'decay': -0.1}, 'decay', '-0.1'),
  (rmsprop, {'learning_rate': 1e-3, 'decay': 1.5}, 'decay', '1.5'),
  (rmsprop, {'learning_rate': 1e-3, 'decay': 1.0001}, 'decay', '1.0001'),
  (rmsprop, {'learning_rate': 1e-3, 'decay': NAN}, 'decay', 'nan'),
  (rmsprop, {'learning_rate': 1e-3, 'eps': -1e-8}, 'eps', '-1e-08'),
  (rmsprop, {'learning_rate': 1e-3, 'eps': -1.0}, 'eps', '-1.0'),
  (rmsprop, {'learning_rate': 1e-3, 'momentum': 1.0}, 'momentum', '1.0'),
  (rmsprop, {'learning_rate': 1e-3, 'momentum': -0.1}, 'momentum', '-0.1'),
  (rmsprop, {'learning_rate': 1e-3, 'momentum': -0.5}, 'momentum', '-0.5'),
  (rmsprop, {'learning_rate': 1e-3, 'weight_decay': -0.01}, 'weight_decay', '-0.01'),
  (rmsprop, {'learning_rate': 1e-3, 'weight_decay': -1.0}, 'weight_decay', '-1.0'),
  (rmsprop, {'learning_rate': 1e-3, 'centered': True, 'mean_decay': 2.0}, 'mean_decay', '2.0'),
  (rmsprop, {'learning_rate': 1e-3, 'centered': True, 'mean_decay': 3.0}, 'mean_decay', '3.0'),
  (rmsprop, {'learning_rate': 1e-3, 'initial_scale': -1.0}, 'initial_scale', '-1.0'),
]


def _id(case) -> str:
  factory, kwargs, argument, shown = case
  return f'{factory.__name__}-{argument}={shown}'


@pytest.mark.parametrize(
  'factory, kwargs, argument, shown', BAD_HYPERPARAMETERS, ids=map(_id, BAD_HYPERPARAMETERS)
)
def test_bad_hyperparameter_is_a_value_error_naming_it(factory, kwargs, argument, shown):
  # The argument in backticks, then the value as repr() shows it.
  with pytest.raises(ValueError, match=rf'`{argument}`.*{re.escape(shown)}') as info:
    factory(**kwargs)
  assert re.search(rf'\b{argument}\b', str(info.value)) and shown in str(info.value)


@pytest.mark.parametrize(
  'value',
  [np.float32(-1.0), jnp.asarray(-1.0), np.array(2.0)],
  ids=['numpy-scalar', 'jax-array', 'numpy-array'],
)
def test_bad_concrete_array_hyperparameters_are_checked_too(value):
  with pytest.raises(ValueError, match='`decay`'):
    rmsprop_optax.scale_by_rms(decay=value)


@pytest.mark.parametrize(
  'make, argument',
  [
    (lambda: rms(decay='0.9'), 'decay'),
    (lambda: rms(decay=None), 'decay'),
    (lambda: rms(decay=[0.9]), 'decay'),
    (lambda: rms(decay=0.9 + 0j), 'decay'),
    (lambda: rmsprop(1e-3, decay='0.9'), 'decay'),
    (lambda: rmsprop(1e-3, decay=True), 'decay'),
    (lambda: rmsprop(None), 'learning_rate'),
  ],
  ids=[
    'scale_by_rms-str',
    'scale_by_rms-None',
    'scale_by_rms-list',
    'scale_by_rms-complex',
    'rmsprop-str',
    'rmsprop-bool',
    'rmsprop-None-lr',
  ],
)
def test_wrong_kind_of_hyperparameter_is_a_type_error(make, argument):
  with pytest.raises(TypeError, match=argument):
    make()


@pytest.mark.parametrize(
  'make',
  [
    lambda: rms(accumulator_dtype=jnp.int32).init(jnp.ones(3)),
    lambda: rmsprop(1e-3, accumulator_dtype=jnp.int32).init({'w': jnp.ones(2)}),
  ],
  ids=['scale_by_rms', 'rmsprop'],
)
def test_integer_accumulator_dtype_is_a_type_error(make):
  with pytest.raises(TypeError, match='floating'):
    make()


def test_boundary_values_are_accepted():
  rmsprop_optax.scale_by_rms(decay=0.0, eps=0.0)
  # decay = 1 keeps nu where it starts: a fixed denominator, legitimate when it is positive.
  rmsprop_optax.scale_by_rms(decay=1.0, initial_scale=1.0)
  rmsprop_optax.rmsprop(0.0, momentum=0.0, weight_decay=0.0)
  rmsprop_optax.rmsprop(1e-3, momentum=0.999999)


def test_nesterov_without_momentum():
  for momentum in (None, 0.0):
    with pytest.raises(ValueError, match='nesterov') as info:
      rmsprop_optax.rmsprop(1e-3, momentum=momentum, nesterov=True)
    if momentum is None:
      # Names the missing argument and shows its value.
      assert re.search(r'\bmomentum\b', str(info.value)) and 'None' in str(info.value)


def test_bias_correction_needs_a_fixed_decay_below_one():
  with pytest.raises(ValueError, match='bias_correction.*decay') as info:
    rmsprop_optax.rmsprop(1e-3, decay=optax.constant_schedule(0.9), bias_correction=True)
  assert re.search(r'\bdecay\b', str(info.value)) and 'schedule' in str(info.value)
  with pytest.raises(ValueError, match='bias_correction.*mean_decay'):
    rmsprop_optax.scale_by_centered_rms(0.9, mean_decay=lambda c: 0.9, bias_correction=True)
  # decay = 1: the correction 1 - decay**t would divide by 0.
  with pytest.raises(ValueError, match='bias_correction'):
    rmsprop_optax.scale_by_rms(1.0, bias_correction=True)
  with pytest.raises(ValueError, match=r'\bdecay\b') as info:
    rmsprop_optax.rmsprop(1e-3, decay=1.0, bias_correction=True)
  assert '1' in str(info.value)


@pytest.mark.parametrize(
  'make, names',
  [
    (lambda: rmsprop_optax.rmsprop(1e-3, decay=1.0), ('decay', 'eps')),
    (lambda: rmsprop_optax.scale_by_rms(jnp.float32(1.0)), ('decay', 'eps')),
    (lambda: rmsprop_optax.scale_by_centered_rms(1.0), ('decay', 'eps')),
    (lambda: presets.keras(1e-3, rho=1.0), ('rho', 'epsilon')),
    (lambda: presets.pytorch(lr=1e-3, alpha=1.0), ('alpha', 'eps')),
  ],
  ids=['rmsprop', 'scale_by_rms', 'centered', 'keras', 'pytorch'],
)
def test_decay_one_with_zero_start_is_refused(make, names):
  # nu = 1 * nu + 0 * g**2 stays 0, so each step would be lr * g / sqrt(eps): 5.0 for
  # lr 1e-3, g 0.5, eps 1e-8 (sqrt(1e-8) = 1e-4). The error says why and offers both ways out.
  decay_name, eps_name = names
  with pytest.raises(ValueError) as info:
    make()
  message = str(info.value)
  assert f'{decay_name}=1' in message and 'initial_scale=0' in message
  assert f'{decay_name} below 1' in message and 'positive initial_scale' in message
  assert 'power_decay' in message and f'sqrt({eps_name})' in message


def test_decay_one_with_a_positive_start_is_a_fixed_denominator():
  # nu stays at initial_scale = 4, so the step is lr * g / sqrt(4 + eps) = 0.1 * 2 / 2 = 0.1.
  tx = rmsprop_optax.rmsprop(0.1, decay=1.0, eps=0.0, initial_scale=4.0)
  params = jnp.zeros(2)
  state = tx.init(params)
  for _ in range(3):
    updates, state = tx.update(jnp.full(2, 2.0), state, params)
    np.testing.assert_allclose(updates, -0.1, rtol=1e-6)


def test_mean_decay_without_centered():
  with pytest.raises(ValueError, match='mean_decay'):
    rmsprop_optax.rmsprop(1e-3, mean_decay=0.9)


# (preset, keyword arguments in the framework's names, the argument the error names)
BAD_PRESET_ARGUMENTS = [
  (presets.pytorch, {'alpha': 1.5}, 'alpha'),
  (presets.pytorch, {'lr': -1.0}, 'lr'),
  (presets.keras, {'rho': -0.1}, 'rho'),
  (presets.keras, {'epsilon': -1.0}, 'epsilon'),
  (presets.keras, {'momentum': 1.0}, 'momentum'),
  (presets.tf1, {'learning_rate': -1.0}, 'learning_rate'),
  (presets.tf1, {'learning_rate': 0.1, 'epsilon': -1.0}, 'epsilon'),
  (presets.timm_tf, {'alpha': 2.0}, 'alpha'),
  (presets.lasagne, {'rho': 1.5}, 'rho'),
  (presets.graves2013, {'momentum': 1.0}, 'momentum'),
  (presets.dqn_nature, {'eps': -0.01}, 'eps'),
]


@pytest.mark.parametrize(
  'preset, kwargs, name',
  BAD_PRESET_ARGUMENTS,
  ids=[f'{p.__name__}-{name}' for p, _, name in BAD_PRESET_ARGUMENTS],
)
def test_preset_errors_use_the_framework_names(preset, kwargs, name):
  with pytest.raises(ValueError, match=rf'`{name}` must satisfy') as info:
    preset(**kwargs)
  # The value as given.
  assert repr(kwargs[name]) in str(info.value)
  for ours in ('decay', 'learning_rate', 'eps'):
    if ours != name and ours not in kwargs:
      assert f'`{ours}`' not in str(info.value)


# -- updates, checked when update is traced -----------------------------------

PARAMS = {'layer': {'w': jnp.ones((2, 3)), 'b': jnp.ones(3)}, 'head': jnp.ones(4)}

# (gradients that do not fit PARAMS, a regex for the first bad path in the error)
BAD_TREES = {
  'shape': (
    {'layer': {'w': jnp.ones((2, 3)), 'b': jnp.ones(5)}, 'head': jnp.ones(4)},
    r"\['layer'\]\['b'\].*\(5,\).*\(3,\)",
  ),
  'missing-leaf': ({'layer': {'w': jnp.ones((2, 3))}, 'head': jnp.ones(4)}, r"\['layer'\]"),
  'renamed-leaf': (
    {'layer': {'w': jnp.ones((2, 3)), 'bias': jnp.ones(3)}, 'head': jnp.ones(4)},
    r"\['layer'\]\['bias'\]",
  ),
  'nested-vs-flat': (
    {'layer': {'w': jnp.ones((2, 3)), 'b': jnp.ones(3)}, 'head': {'x': jnp.ones(4)}},
    r"\['head'\]\['x'\]",
  ),
}


@pytest.mark.parametrize('jit', [False, True], ids=['eager', 'jit'])
@pytest.mark.parametrize('case', BAD_TREES)
@pytest.mark.parametrize(
  'factory',
  [
    lambda: rmsprop_optax.scale_by_rms(),
    lambda: rmsprop_optax.scale_by_centered_rms(),
    lambda: rmsprop_optax.rmsprop(1e-3, momentum=0.9, centered=True),
  ],
  ids=['rms', 'centered', 'rmsprop'],
)
def test_mismatched_tree_names_the_first_bad_path(factory, case, jit):
  opt = factory()
  state = opt.init(PARAMS)
  update = jax.jit(opt.update) if jit else opt.update
  grads, path = BAD_TREES[case]
  # With the params and without them (they are optional without weight decay).
  for args in ((grads, state, PARAMS), (grads, state)):
    with pytest.raises(ValueError, match='does not match the optimizer state') as info:
      update(*args)
    assert re.search(path, str(info.value)), str(info.value)


@pytest.mark.parametrize('dtype', [jnp.int32, jnp.int8, jnp.bool_, jnp.uint8])
@pytest.mark.parametrize(
  'factory',
  [
    lambda: rmsprop_optax.scale_by_rms(),
    lambda: rmsprop_optax.scale_by_centered_rms(),
    lambda: rmsprop_optax.rmsprop(1e-3, weight_decay=0.1, maximize=True),
  ],
  ids=['rms', 'centered', 'rmsprop-with-decay'],
)
def test_integer_or_bool_gradients_are_a_type_error(factory, dtype):
  opt = factory()
  params = {'w': jnp.ones(3)}
  state = opt.init(params)
  with pytest.raises(
    TypeError, match=rf"\['w'\].*{jnp.dtype(dtype).name}|{jnp.dtype(dtype).name}.*\['w'\]"
  ):
    opt.update({'w': jnp.ones(3, dtype)}, state, params)


def test_weight_decay_needs_params():
  opt = rmsprop_optax.rmsprop(1e-3, weight_decay=0.1)
  state = opt.init(PARAMS)
  with pytest.raises(ValueError, match='params'):
    opt.update(PARAMS, state)


@pytest.mark.parametrize('accumulator_dtype', [None, jnp.float32, rmsprop_optax.quantized(8)])
def test_a_non_float_param_is_named_with_the_fix(accumulator_dtype):
  params = {'layer': {'w': jnp.ones((2, 2)), 'steps': jnp.zeros((), jnp.int32)}}
  with pytest.raises(TypeError) as info:
    rmsprop_optax.rmsprop(1e-3, accumulator_dtype=accumulator_dtype).init(params)
  message = str(info.value)
  assert "['layer']['steps']" in message and 'int32' in message, message
  assert 'optax.masked' in message and 'cast it to a float dtype' in message, message
