"""Every optimizer form in every training loop: Flax NNX, Flax Linen, Haiku, Equinox, plain Optax.

Each is an ``optax.GradientTransformation``, so it goes wherever Optax does.

Each pair trains a 1-64-64-1 tanh MLP on ``y = sin(3 x)`` for ``STEPS``
jitted steps and must cut the loss by ``MIN_LOSS_RATIO``: a broken update
(wrong sign, state not threaded, codes lost, learning rate ignored) does not.
The 64x64 hidden weight has 4096 elements, so the quantized forms store its
moments as codes (``quantized``'s default ``min_size`` is 4096) and the
biases in float32. Where the loop has a checkpoint (NNX's ``nnx.state`` and
the plain Optax state, through orbax), the restored state equals the saved
one bit for bit and the next step from it is bit-identical.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _harness import need

import rmsprop_optax
from rmsprop_optax import presets

ocp = need('orbax.checkpoint')
flax = need('flax')
hk = need('haiku')
eqx = need('equinox')

from flax import linen, nnx  # noqa: E402
from flax.training import train_state  # noqa: E402

STEPS = 40
# At this learning rate every pair halves the loss within 40 steps on CPU
# (at 1e-2 several overshoot on this net); an update that does not train
# (wrong sign, lost state) does not.
MIN_LOSS_RATIO = 2.0
LR = 3e-3
WIDTH = 64
Q8 = rmsprop_optax.quantized(8)

FORMS = {
  'float32': lambda: rmsprop_optax.rmsprop(LR),
  'bf16_params': lambda: rmsprop_optax.rmsprop(LR),  # float32 state for bf16 params
  'centered_momentum': lambda: rmsprop_optax.rmsprop(LR, momentum=0.9, centered=True),
  'q8': lambda: rmsprop_optax.rmsprop(LR, momentum=0.9, centered=True, accumulator_dtype=Q8),
  'q4': lambda: rmsprop_optax.rmsprop(
    LR, momentum=0.9, accumulator_dtype=rmsprop_optax.quantized(4)
  ),
  'bitsandbytes': lambda: presets.bitsandbytes(lr=LR),
  'pytorch_preset': lambda: presets.pytorch(lr=LR, momentum=0.9),
  'inject_hyperparams': lambda: optax.inject_hyperparams(rmsprop_optax.rmsprop)(
    learning_rate=LR, momentum=0.9, accumulator_dtype=Q8
  ),
  'multi_steps': lambda: optax.MultiSteps(rmsprop_optax.rmsprop(LR, accumulator_dtype=Q8), 2),
  # Clipping before the rescaling, as in DQN/IMPALA-style agents.
  'clipped_centered': lambda: optax.chain(
    optax.clip_by_global_norm(1.0), rmsprop_optax.rmsprop(LR, decay=0.95, centered=True)
  ),
  'masked_weight_decay': lambda: rmsprop_optax.rmsprop(
    LR,
    weight_decay=1e-4,
    decoupled_weight_decay=True,
    weight_decay_mask=lambda p: jax.tree.map(lambda x: x.ndim > 1, p),
    accumulator_dtype=Q8,
  ),
}


def _data():
  x = np.linspace(-1.0, 1.0, 64, dtype=np.float32)[:, None]
  return jnp.asarray(x), jnp.asarray(np.sin(3.0 * x))


def _dtype(form):
  return jnp.bfloat16 if form == 'bf16_params' else jnp.float32


def _mse(pred, y):
  return jnp.mean((pred.astype(jnp.float32) - y) ** 2)


def _checkpoint_round_trip(tmp_path, tree):
  """Saves and restores ``tree`` with orbax (into its own abstract structure)."""
  path = tmp_path / 'ckpt'
  with ocp.StandardCheckpointer() as ckpt:
    ckpt.save(path, tree)
    ckpt.wait_until_finished()
    return ckpt.restore(path, jax.tree.map(ocp.utils.to_shape_dtype_struct, tree))


def _nnx(form, tmp_path):
  class MLP(nnx.Module):
    def __init__(self, rngs):
      kw = dict(rngs=rngs, param_dtype=_dtype(form))
      self.l1 = nnx.Linear(1, WIDTH, **kw)
      self.l2 = nnx.Linear(WIDTH, WIDTH, **kw)
      self.l3 = nnx.Linear(WIDTH, 1, **kw)

    def __call__(self, x):
      x = x.astype(self.l1.kernel.dtype)
      return self.l3(jnp.tanh(self.l2(jnp.tanh(self.l1(x)))))

  x, y = _data()
  model = MLP(nnx.Rngs(0))
  optimizer = nnx.Optimizer(model, FORMS[form](), wrt=nnx.Param)

  @nnx.jit
  def train_step(model, optimizer):
    loss, grads = nnx.value_and_grad(lambda m: _mse(m(x), y))(model)
    optimizer.update(model, grads)
    return loss

  initial = float(_mse(model(x), y))
  for _ in range(STEPS):
    train_step(model, optimizer)
  final = float(_mse(model(x), y))
  # The RMS statistics live in the optimizer's state and were updated every
  # step (every second one under MultiSteps(k=2)).
  count = rmsprop_optax.find_rms_state(optimizer.opt_state).count
  assert int(count) == (STEPS // 2 if form == 'multi_steps' else STEPS)

  saved = nnx.state(optimizer)
  restored = _checkpoint_round_trip(tmp_path, nnx.to_pure_dict(saved))
  chex.assert_trees_all_equal(restored, nnx.to_pure_dict(saved))
  twin_model, twin = nnx.clone(model), nnx.clone(optimizer)
  nnx.replace_by_pure_dict(saved, restored)
  nnx.update(twin, saved)
  train_step(model, optimizer)
  train_step(twin_model, twin)
  chex.assert_trees_all_equal(nnx.state(twin_model), nnx.state(model))
  chex.assert_trees_all_equal(nnx.state(twin), nnx.state(optimizer))
  return initial, final


def _linen(form, tmp_path):
  del tmp_path

  class MLP(linen.Module):
    @linen.compact
    def __call__(self, x):
      dense = lambda n: linen.Dense(n, param_dtype=_dtype(form), dtype=_dtype(form))
      return dense(1)(jnp.tanh(dense(WIDTH)(jnp.tanh(dense(WIDTH)(x)))))

  x, y = _data()
  model = MLP()
  state = train_state.TrainState.create(
    apply_fn=model.apply, params=model.init(jax.random.key(0), x)['params'], tx=FORMS[form]()
  )
  loss_fn = lambda params: _mse(state.apply_fn({'params': params}, x), y)

  @jax.jit
  def train_step(state):
    return state.apply_gradients(grads=jax.grad(loss_fn)(state.params))

  initial = float(loss_fn(state.params))
  for _ in range(STEPS):
    state = train_step(state)
  return initial, float(loss_fn(state.params))


def _optax_loop(loss_fn, params, opt, tmp_path=None):
  """A plain Optax loop (Haiku and plain JAX); with ``tmp_path``, a checkpoint round trip."""

  @jax.jit
  def train_step(params, opt_state):
    updates, opt_state = opt.update(jax.grad(loss_fn)(params), opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  opt_state = opt.init(params)
  initial = float(loss_fn(params))
  for _ in range(STEPS):
    params, opt_state = train_step(params, opt_state)
  final = float(loss_fn(params))
  if tmp_path is not None:
    restored = _checkpoint_round_trip(tmp_path, opt_state)
    chex.assert_trees_all_equal(restored, opt_state)
    chex.assert_trees_all_equal(train_step(params, restored), train_step(params, opt_state))
  return initial, final


def _haiku(form, tmp_path):
  del tmp_path
  net = hk.without_apply_rng(
    hk.transform(lambda x: hk.nets.MLP([WIDTH, WIDTH, 1], activation=jnp.tanh)(x))
  )
  x, y = _data()
  params = jax.tree.map(lambda p: p.astype(_dtype(form)), net.init(jax.random.key(0), x))
  loss_fn = lambda p: _mse(net.apply(p, x.astype(_dtype(form))), y)
  return _optax_loop(loss_fn, params, FORMS[form]())


def _plain(form, tmp_path):
  x, y = _data()
  keys = jax.random.split(jax.random.key(0), 3)
  sizes = [(1, WIDTH), (WIDTH, WIDTH), (WIDTH, 1)]
  params = {
    f'layer{i}': {
      'w': (jax.random.normal(k, s) / np.sqrt(s[0])).astype(_dtype(form)),
      'b': jnp.zeros(s[1], _dtype(form)),
    }
    for i, (k, s) in enumerate(zip(keys, sizes))
  }

  def loss_fn(p):
    h = x.astype(_dtype(form))
    for i in range(3):
      h = h @ p[f'layer{i}']['w'] + p[f'layer{i}']['b']
      h = jnp.tanh(h) if i < 2 else h
    return _mse(h, y)

  return _optax_loop(loss_fn, params, FORMS[form](), tmp_path)


def _equinox(form, tmp_path):
  del tmp_path
  x, y = _data()
  model = eqx.nn.MLP(1, 1, WIDTH, 2, activation=jnp.tanh, key=jax.random.key(0))
  model = jax.tree.map(lambda p: p.astype(_dtype(form)) if eqx.is_array(p) else p, model)
  opt = FORMS[form]()
  loss_fn = lambda m: _mse(jax.vmap(m)(x.astype(_dtype(form))), y)

  @eqx.filter_jit
  def train_step(model, opt_state):
    grads = eqx.filter_grad(loss_fn)(model)
    updates, opt_state = opt.update(grads, opt_state, eqx.filter(model, eqx.is_array))
    return eqx.apply_updates(model, updates), opt_state

  opt_state = opt.init(eqx.filter(model, eqx.is_array))
  initial = float(loss_fn(model))
  for _ in range(STEPS):
    model, opt_state = train_step(model, opt_state)
  return initial, float(loss_fn(model))


def test_equinox_unfiltered_model_is_a_clear_type_error():
  model = eqx.nn.MLP(1, 1, width_size=8, depth=1, activation=jax.nn.relu, key=jax.random.key(0))
  leaves = jax.tree_util.tree_flatten_with_path(model)[0]
  path = jax.tree_util.keystr(next(path for path, leaf in leaves if not eqx.is_array(leaf)))
  assert path == '.activation'
  with pytest.raises(TypeError) as info:
    rmsprop_optax.rmsprop(LR).init(model)
  # The message says where the offending leaf is and how to drop it.
  assert path in str(info.value), str(info.value)
  assert 'eqx.filter' in str(info.value), str(info.value)


LOOPS = {'nnx': _nnx, 'linen': _linen, 'haiku': _haiku, 'equinox': _equinox, 'optax': _plain}


@pytest.mark.parametrize('loop', sorted(LOOPS))
@pytest.mark.parametrize('form', sorted(FORMS))
def test_form_trains_in_loop(form, loop, tmp_path):
  initial, final = LOOPS[loop](form, tmp_path)
  assert final <= initial / MIN_LOSS_RATIO, (initial, final)


def test_quantized_forms_store_codes_in_every_loop_that_keeps_them():
  """The hidden weight's moments are codes under NNX (the state a framework rebuilds)."""

  class MLP(nnx.Module):
    def __init__(self, rngs):
      self.l2 = nnx.Linear(WIDTH, WIDTH, rngs=rngs)

  optimizer = nnx.Optimizer(MLP(nnx.Rngs(0)), FORMS['q8'](), wrt=nnx.Param)
  codes = [
    x for x in jax.tree.leaves(nnx.to_pure_dict(nnx.state(optimizer))) if x.dtype == jnp.uint8
  ]
  assert [c.shape for c in codes] == [(WIDTH, WIDTH)] * 3  # nu, mu, momentum


def test_a_state_that_lost_its_structure_is_named_as_such():
  opt = FORMS['q8']()
  params = {'w': jnp.zeros((WIDTH, WIDTH))}
  state = opt.init(params)
  rms = rmsprop_optax.find_rms_state(state)
  # A framework that rebuilt the QuantizedTree as a plain mapping.
  as_dict = rms._replace(nu={'codes': rms.nu.codes, 'scale': rms.nu.scale, 'dense': rms.nu.dense})
  with pytest.raises(ValueError, match='plain mapping'):
    opt.update(params, (as_dict,) + tuple(state[1:]), params)
  # The per-param layout of version 0.1.
  old = rms._replace(nu={'w': {'codes': rms.nu.codes['w'], 'scale': rms.nu.scale['w']}})
  with pytest.raises(ValueError, match='per-param layout'):
    opt.update(params, (old,) + tuple(state[1:]), params)
  # Params that changed are still reported as such.
  with pytest.raises(ValueError, match='different params'):
    opt.update({'w': jnp.zeros((WIDTH, 2))}, state, {'w': jnp.zeros((WIDTH, 2))})
