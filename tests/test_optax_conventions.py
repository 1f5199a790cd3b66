"""What an Optax user expects of ``rmsprop``: injection, structure, clear errors on foreign trees.

References: ``rmsprop_optax.rmsprop`` itself, built plainly (``inject_hyperparams``
must change nothing but where the hyperparameters live), and the error
messages' contract (the path of the offending leaf and what to do).
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _harness import small_params

import rmsprop_optax
from rmsprop_optax import _checks

# float32. Injected hyperparameters are float32 arrays, so ``1 - decay`` and
# ``lr * wd`` are rounded in float32 instead of formed from Python floats:
# measured up to 1.4e-6 relative after 5 steps.
INJECT_RTOL = 1e-5

CONFIGS = {
  'plain': {},
  'centered': {'centered': True},
  'momentum': {'momentum': 0.9},
  'centered_nesterov': {'centered': True, 'momentum': 0.9, 'nesterov': True},
  'bias_correction': {'bias_correction': True},
}


def _grads(i):
  key = jax.random.PRNGKey(i)
  return jax.tree.map(lambda p: jax.random.normal(key, p.shape), small_params())


@pytest.mark.parametrize('name', CONFIGS)
def test_injected_state_has_the_plain_structure_and_needs_no_params(name):
  kwargs = CONFIGS[name]
  plain = rmsprop_optax.rmsprop(0.1, **kwargs)
  injected = optax.inject_hyperparams(rmsprop_optax.rmsprop)(learning_rate=0.1, **kwargs)
  params = small_params()
  plain_state, inj_state = plain.init(params), injected.init(params)
  assert jax.tree.structure(inj_state.inner_state) == jax.tree.structure(plain_state)
  assert 'weight_decay' not in inj_state.hyperparams
  for i in range(5):
    want, plain_state = plain.update(_grads(i), plain_state)  # no params: no decay step
    got, inj_state = injected.update(_grads(i), inj_state)
    chex.assert_trees_all_close(got, want, rtol=INJECT_RTOL)


def test_python_zero_weight_decay_adds_no_step():
  params = small_params()
  zero = rmsprop_optax.rmsprop(0.1, weight_decay=0.0).init(params)
  none = rmsprop_optax.rmsprop(0.1).init(params)
  assert jax.tree.structure(zero) == jax.tree.structure(none)


@pytest.mark.parametrize('decoupled', [False, True])
def test_injected_weight_decay_matches_plain_and_can_be_changed(decoupled):
  params = small_params()
  factory = optax.inject_hyperparams(rmsprop_optax.rmsprop)
  injected = factory(learning_rate=0.1, weight_decay=1e-2, decoupled_weight_decay=decoupled)
  state = injected.init(params)
  got, state = injected.update(_grads(0), state, params)
  plain = rmsprop_optax.rmsprop(0.1, weight_decay=1e-2, decoupled_weight_decay=decoupled)
  want, plain_state = plain.update(_grads(0), plain.init(params), params)
  chex.assert_trees_all_close(got, want, rtol=INJECT_RTOL)

  # The coefficient lives in the state: raise it, and the next step follows.
  state.hyperparams['weight_decay'] = jnp.asarray(0.5)
  got, _ = injected.update(_grads(1), state, params)
  stronger = rmsprop_optax.rmsprop(0.1, weight_decay=0.5, decoupled_weight_decay=decoupled)
  want, _ = stronger.update(_grads(1), plain_state, params)
  chex.assert_trees_all_close(got, want, rtol=INJECT_RTOL)

  with pytest.raises(ValueError, match='`params` must be passed'):
    injected.update(_grads(1), state)


def test_an_injected_zero_weight_decay_is_a_hyperparameter():
  """Passed explicitly, 0 becomes an array that can be raised later, so the step stays."""
  params = small_params()
  injected = optax.inject_hyperparams(rmsprop_optax.rmsprop)(learning_rate=0.1, weight_decay=0.0)
  state = injected.init(params)
  assert 'weight_decay' in state.hyperparams
  got, _ = injected.update(_grads(0), state, params)
  want, _ = rmsprop_optax.rmsprop(0.1).update(_grads(0), rmsprop_optax.rmsprop(0.1).init(params))
  chex.assert_trees_all_close(got, want, rtol=INJECT_RTOL)


def test_gradient_dtypes_are_checked_once_per_update(monkeypatch):
  calls = []
  original = _checks.check_float_updates

  def counting(updates, what):
    calls.append(what)
    return original(updates, what)

  monkeypatch.setattr(_checks, 'check_float_updates', counting)
  opt = rmsprop_optax.rmsprop(0.1, momentum=0.9, centered=True)
  params = small_params()
  opt.update(_grads(0), opt.init(params), params)
  assert calls == ['rmsprop']
  calls.clear()
  tier1 = rmsprop_optax.scale_by_centered_rms()
  tier1.update(_grads(0), tier1.init(params))
  assert calls == ['scale_by_centered_rms']


class _Activation:
  def __call__(self, x):
    return jax.nn.relu(x)


@pytest.mark.parametrize(
  'make',
  [
    lambda: rmsprop_optax.rmsprop(0.1, momentum=0.9),
    lambda: rmsprop_optax.scale_by_rms(),
    lambda: rmsprop_optax.scale_by_centered_rms(),
    lambda: rmsprop_optax.presets.pytorch(),
  ],
)
@pytest.mark.parametrize(
  'leaf, path',
  [(jax.nn.relu, "['layers'][1]['act']"), (_Activation(), "['layers'][1]['act']")],
)
def test_init_names_the_first_non_array_leaf(make, leaf, path):
  params = {'layers': [{'w': jnp.ones(2)}, {'act': leaf, 'w': jnp.ones(3)}]}
  with pytest.raises(TypeError) as info:
    make().init(params)
  message = str(info.value)
  assert f'leaf at {path}' in message
  assert type(leaf).__name__ in message
  assert 'eqx.filter(model, eqx.is_array)' in message


def test_init_accepts_arrays_numbers_none_and_abstract_shapes():
  opt = rmsprop_optax.rmsprop(0.1, momentum=0.9)
  params = {'a': jnp.ones(2), 'b': np.zeros(3, np.float32), 'c': None, 'd': 1.5}
  state = opt.init(params)
  assert rmsprop_optax.find_rms_state(state).nu['b'].shape == (3,)
  shapes = jax.eval_shape(opt.init, {'a': jax.ShapeDtypeStruct((4, 5), jnp.bfloat16)})
  nu = rmsprop_optax.find_rms_state(shapes).nu['a']
  assert (nu.shape, nu.dtype) == ((4, 5), jnp.float32)
