"""The quantized step is computed chunk by chunk: same numbers, bounded memory.

References: the same optimizer with chunking switched off (one chunk per
leaf: the whole-leaf arithmetic, whose codes follow the NumPy reference of
``tests/test_quantized.py``), compared bit for bit; and the float32-state
step, whose compiled temporaries (XLA's ``memory_analysis()``, deterministic
for a given program) bound the quantized step's.
"""

from __future__ import annotations

import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import rmsprop_optax
from rmsprop_optax import _quantize, _transforms, presets

Q8 = rmsprop_optax.quantized(8, min_size=0)
Q4 = rmsprop_optax.quantized(4, min_size=0)
QF = rmsprop_optax.quantized(8, min_size=0, map='float')

CONFIGS = {
  'plain': lambda: rmsprop_optax.rmsprop(1e-3, accumulator_dtype=Q8),
  'centered_momentum': lambda: rmsprop_optax.rmsprop(
    1e-3, momentum=0.9, centered=True, accumulator_dtype=Q8
  ),
  'nesterov_decoupled': lambda: rmsprop_optax.rmsprop(
    1e-3,
    momentum=0.9,
    nesterov=True,
    weight_decay=0.1,
    decoupled_weight_decay=True,
    accumulator_dtype=Q8,
  ),
  'bias_coupled': lambda: rmsprop_optax.rmsprop(
    1e-3, centered=True, bias_correction=True, weight_decay=0.1, accumulator_dtype=Q8
  ),
  'four_bit_centered_momentum': lambda: rmsprop_optax.rmsprop(
    1e-3, momentum=0.9, centered=True, accumulator_dtype=Q4
  ),
  'bitsandbytes': lambda: presets.bitsandbytes(1e-3, weight_decay=0.01, min_8bit_size=0),
  # bnb's code choice and rounding with settings bnb lacks: stepped in chunks,
  # this one rounded the second moment otherwise than stepped whole.
  'bitsandbytes_rounding_centered_momentum_decay': lambda: rmsprop_optax.rmsprop(
    1e-3,
    momentum=0.9,
    centered=True,
    weight_decay=0.1,
    accumulator_dtype=rmsprop_optax.quantized(8, min_size=0, rounding='bitsandbytes'),
  ),
  'inject_hyperparams': lambda: optax.inject_hyperparams(rmsprop_optax.rmsprop)(
    learning_rate=1e-3, momentum=0.9, accumulator_dtype=Q8
  ),
  'multi_steps': lambda: optax.MultiSteps(
    rmsprop_optax.rmsprop(1e-3, momentum=0.9, centered=True, accumulator_dtype=Q8), 2
  ),
  'float_map_plain': lambda: rmsprop_optax.rmsprop(1e-3, accumulator_dtype=QF),
  'float_map_centered_momentum_coupled': lambda: rmsprop_optax.rmsprop(
    1e-3, momentum=0.9, centered=True, weight_decay=0.1, accumulator_dtype=QF
  ),
}

# Chunk boundaries that do not divide a leaf, a leaf smaller than one chunk,
# 1-D leaves with and without whole blocks (the last run of columns holding a
# whole block and a partial one, or a partial one alone), three dimensions
# (cut along two axes), rows too few to cut (the last axis cut into blocks), an
# odd last axis (4 bits keep it in float32), a zero-size leaf.
SHAPES = {
  'rows_uneven': (150, 640),
  'one_chunk': (4, 256),
  'vector_blocks': (8192,),
  'vector_tail': (3000,),
  'vector_short_run': (1124,),
  'three_d': (12, 5, 384),
  'few_rows': (2, 16384),
  'odd_last_axis': (64, 129),
  'empty': (0, 256),
}
SMALL_CHUNK = 1024  # elements: every leaf above but 'one_chunk' and 'empty' is split


def _params():
  key = jax.random.key(0)
  return {
    name: jax.random.normal(jax.random.fold_in(key, i), shape)
    for i, (name, shape) in enumerate(SHAPES.items())
  }


def _run(opt, steps=3, params=None):
  params = _params() if params is None else params
  state = opt.init(params)
  update = jax.jit(opt.update)
  outs = []
  for i in range(steps):
    grads = jax.tree.map(lambda p, i=i: jnp.sin(p * (i + 1.0)) + 0.01 * p, params)
    updates, state = update(grads, state, params)
    outs.append(updates)
    params = optax.apply_updates(params, updates)
  return outs, state


@pytest.fixture
def chunk_elements(monkeypatch):
  """Sets the chunk size for the optimizers traced inside the test."""

  def set_to(n):
    monkeypatch.setattr(_quantize, 'CHUNK_ELEMENTS', n)
    _transforms._jit_with_constants.cache_clear()  # per-leaf functions traced at the old size

  yield set_to
  _transforms._jit_with_constants.cache_clear()


def _layout_only(shape):
  """An 8-bit, block-256 QuantizedArray of ``shape`` without arrays: for the chunking plan."""
  return _quantize.QuantizedArray(None, None, shape, 8, 256, False, unsigned_zero=False)  # type: ignore[arg-type]


def test_the_test_shapes_are_chunked():
  chunks = {
    name: _quantize.num_chunks(
      _quantize.view_shape(_layout_only(shape), SMALL_CHUNK),
      SMALL_CHUNK,
    )
    for name, shape in SHAPES.items()
    if name != 'empty'
  }
  assert chunks['one_chunk'] == 1
  # A 1-D leaf without whole blocks is one row, which rows cannot divide: runs
  # of two blocks of columns do, the last one short.
  rows_of_one = ('one_chunk', 'vector_tail', 'vector_short_run')
  for name in rows_of_one[1:]:
    assert chunks[name] == 1
    assert _quantize.chunk_width(_layout_only(SHAPES[name]), SMALL_CHUNK) == 512
  assert SHAPES['vector_tail'][0] % 512 > 256  # a whole block and a partial one
  assert SHAPES['vector_short_run'][0] % 512 < 256  # a partial block alone
  assert all(c > 1 for name, c in chunks.items() if name not in rows_of_one), chunks
  assert SHAPES['rows_uneven'][0] % chunks['rows_uneven'] == 0  # a divisor of the rows...
  assert chunks['rows_uneven'] not in (1, SHAPES['rows_uneven'][0])  # ...not a trivial one
  # Too few rows for chunks of SMALL_CHUNK: the next axis is cut too...
  assert _quantize.chunk_counts(SHAPES['three_d'], SMALL_CHUNK) == (3, 5)
  # ...or the last axis, split into blocks (the first axis keeps its 2 rows whole).
  few = _layout_only(SHAPES['few_rows'])
  assert _quantize.view_shape(few, SMALL_CHUNK) == (2, 64, 256)
  assert _quantize.chunk_counts((2, 64, 256), SMALL_CHUNK) == (1, 8)
  assert _quantize.view_shape(few, 10**12) == SHAPES['few_rows']  # one chunk: as it is


# The unchunked reference of a 1-D leaf without whole blocks is one run of its
# whole blocks and a short one (map_column_chunks): the result does not depend
# on the run width. Against stepping such a leaf as one chunk, as before runs,
# the codes agree and small vectors' updates differ in their last bits (a
# multiply-add fused elsewhere).
@pytest.mark.parametrize('config', sorted(CONFIGS))
def test_chunking_does_not_change_updates_or_state(config, chunk_elements, monkeypatch):
  chunk_elements(10**12)
  with monkeypatch.context() as m:
    m.setattr(_quantize, 'leaf_groups', _alone)  # every leaf its own chunk
    whole = _run(CONFIGS[config]())
  chunk_elements(SMALL_CHUNK)
  chunked = _run(CONFIGS[config]())
  chex.assert_trees_all_equal(chunked, whole)


def _alone(xs, stored, inputs):
  """:func:`_quantize.leaf_groups` with every leaf stepped on its own."""
  return [[i] for i in range(len(xs))]


# Small leaves are joined and stepped as one (in a one-device process, as
# here): rows of whole blocks of 128 and of 256 elements, groups of more than
# one chunk (padded with rows of zeros), a leaf whose blocks are not whole
# (alone), float32 state beside them (the 4-bit configuration's odd last axis).
GROUPED_SHAPES = {
  'rows_128': (8, 128),
  'more_rows_128': (9, 128),
  'yet_more_rows_128': (17, 128),
  'rows_512': (4, 512),
  'vector': (2048,),
  'three_d': (3, 5, 256),
  'stack': (2, 4, 256),
  'partial_block': (5, 384),
  'odd_last_axis': (7, 129),
}
GROUPED_CHUNK = 4096


@pytest.mark.parametrize('config', sorted(CONFIGS))
def test_small_leaves_stepped_together_give_the_same_numbers(config, chunk_elements, monkeypatch):
  chunk_elements(GROUPED_CHUNK)
  params = {
    name: jax.random.normal(jax.random.fold_in(jax.random.key(1), i), shape)
    for i, (name, shape) in enumerate(GROUPED_SHAPES.items())
  }
  with monkeypatch.context() as m:
    m.setattr(_quantize, 'leaf_groups', _alone)
    alone = _run(CONFIGS[config](), params=params)
  joined = []
  real_join = _quantize.join
  monkeypatch.setattr(
    _quantize, 'join', lambda *a, **k: joined.append(a[0]) or real_join(*a, **k)
  )  # counts the groups
  together = _run(CONFIGS[config](), params=params)
  chex.assert_trees_all_equal(together, alone)
  if 'bitsandbytes' in config:
    assert not joined  # bnb's rounding: every leaf alone
  else:
    assert len(joined) >= 2, joined  # rows of 128 and rows of 256
    assert any(sum(x.size for x in xs) > GROUPED_CHUNK for xs in joined)


def test_leaves_are_not_joined_with_more_than_one_device(monkeypatch):
  """Leaves sharded over devices would move between them in a concatenation."""
  xs = [jnp.zeros(shape) for shape in [(8, 128), (9, 128)]]
  stored = [[_quantize.init(x, 0.0, Q8, signed=False)] for x in xs]
  assert _quantize.leaf_groups(xs, stored, [[], []]) == [[0, 1]]
  monkeypatch.setattr(jax, 'device_count', lambda *a: 8)
  assert _quantize.leaf_groups(xs, stored, [[], []]) == [[0], [1]]


def test_small_leaves_compile_their_lookups_once():
  """The code lookups (gathers) of small leaves stepped alike do not grow with their number.

  XLA:CPU compiles every kernel on its own, and a quantized leaf stepped alone
  is about two dozen; measured on a 2-core x86 CPU, 100 leaves of shapes
  ``(64 + i, 128)`` (centered + momentum) compiled in 31-34 s against 4-5 s
  for float32 state, and now in about the float32 state's time.
  """

  def gathers(leaves):
    params = {f'w{i}': jax.ShapeDtypeStruct((64 + i, 128), jnp.float32) for i in range(leaves)}
    opt = rmsprop_optax.rmsprop(1e-3, momentum=0.9, centered=True, accumulator_dtype=Q8)
    state = jax.eval_shape(opt.init, params)
    compiled = jax.jit(opt.update).lower(params, state).compile()
    return len(re.findall(r' gather\(', compiled.as_text()))

  few, many = gathers(4), gathers(40)
  assert few > 0 and many == few, (few, many)


def _grads_argument_temp(opt, params):
  """Compiled temp bytes of the donated step that takes the gradients as an argument."""
  _transforms._jit_with_constants.cache_clear()  # per-leaf steps traced under other patches
  return rmsprop_optax.step_memory(opt, params).temp_bytes


def test_small_leaves_stepped_together_hold_fewer_temporaries(monkeypatch):
  """Joined, small leaves hold their joined copies, not every leaf's whole-leaf temporaries."""
  params = {f'w{i}': jax.ShapeDtypeStruct((64 + i, 128), jnp.float32) for i in range(20)}
  opt = rmsprop_optax.rmsprop(1e-3, momentum=0.9, centered=True, accumulator_dtype=Q8)
  together = _grads_argument_temp(opt, params)
  monkeypatch.setattr(_quantize, 'leaf_groups', _alone)
  alone = _grads_argument_temp(opt, params)
  # Measured: 3.05 MiB against 5.97 (float32 state: 2.15 MiB, its step none).
  assert together < 0.6 * alone, (together, alone)


@pytest.mark.parametrize('momentum', [None, 0.9])
def test_small_leaves_hold_one_group_at_a_time(momentum, chunk_elements):
  """The step's temporaries hold about one group's joined copies, however many leaves.

  Every group's join waits for the group before it; left free, XLA:CPU
  scheduled all the joins first and held every group's copies at once (300
  leaves of shapes ``(64 + i, 128)``, centered + momentum: 60 MiB, against 19
  now, and 19 for 600 leaves).
  """
  chunk_elements(GROUPED_CHUNK)  # groups of 8 chunks: 32768 elements

  opt = rmsprop_optax.rmsprop(
    1e-3, momentum=momentum, centered=momentum is not None, accumulator_dtype=Q8
  )

  def temp(n):
    params = {f'w{i:03d}': jax.ShapeDtypeStruct((16 + i % 8, 128), jnp.float32) for i in range(n)}
    # (The float32-state step holds no temporaries: the update is fused into the apply.)
    return _grads_argument_temp(opt, params)

  few, many = temp(40), temp(160)  # 4 and 16 groups of about 32768 elements
  assert many < 1.25 * few, (few, many)


# Coupled decay is added inside the chunked step; it must be what
# optax.add_decayed_weights before the optimizer gives, bit for bit.
COUPLED_DECAY = {
  'constant': dict(weight_decay=0.1),
  'mask_tree': dict(
    weight_decay=0.1, weight_decay_mask={name: name != 'three_d' for name in SHAPES}
  ),
  'mask_callable': dict(
    weight_decay=0.1, weight_decay_mask=lambda u: jax.tree.map(lambda x: x.ndim > 1, u)
  ),
  'schedule': dict(weight_decay=optax.linear_schedule(0.1, 0.0, 2)),
}


@pytest.mark.parametrize('momentum', [None, 0.9])
@pytest.mark.parametrize('decay', sorted(COUPLED_DECAY))
def test_coupled_decay_in_the_chunked_step_is_add_decayed_weights(decay, momentum, chunk_elements):
  chunk_elements(SMALL_CHUNK)
  kw = COUPLED_DECAY[decay]
  settings = dict(momentum=momentum, centered=momentum is not None, accumulator_dtype=Q8)
  folded = _run(rmsprop_optax.rmsprop(1e-3, **kw, **settings))
  mask = kw.get('weight_decay_mask')
  chained = _run(
    optax.chain(
      optax.add_decayed_weights(kw['weight_decay'], mask),
      rmsprop_optax.rmsprop(1e-3, **settings),
    )
  )
  chex.assert_trees_all_equal(folded[0], chained[0])  # the updates of every step
  chex.assert_trees_all_equal(
    [x for x in jax.tree.leaves(folded[1]) if x.ndim],
    [x for x in jax.tree.leaves(chained[1]) if x.ndim],
  )  # the moments (the chains' counts sit in different places)
  # And the decay is there: without it the updates differ.
  plain = _run(rmsprop_optax.rmsprop(1e-3, **settings))
  assert not np.array_equal(plain[0][-1]['rows_uneven'], folded[0][-1]['rows_uneven'])


def test_coupled_decay_under_inject_hyperparams_is_add_decayed_weights():
  make = optax.inject_hyperparams(rmsprop_optax.rmsprop)
  folded = _run(make(learning_rate=1e-3, weight_decay=0.1, accumulator_dtype=Q8))
  chained = _run(
    optax.chain(
      optax.add_decayed_weights(0.1),
      make(learning_rate=1e-3, accumulator_dtype=Q8),
    )
  )
  chex.assert_trees_all_equal(folded[0], chained[0])


def test_quantized_trees_hold_only_arrays_and_none():
  state = CONFIGS['centered_momentum']().init(_params())
  trees = [
    x
    for x in jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, rmsprop_optax.QuantizedTree))
    if isinstance(x, rmsprop_optax.QuantizedTree)
  ]
  assert len(trees) == 3  # nu, mu, the momentum buffer
  for tree in trees:
    for name in SHAPES:
      quantized = tree.codes[name] is not None
      assert (tree.scale[name] is not None) == quantized
      assert (tree.dense[name] is None) == quantized
      assert quantized == (name not in ('empty',)), name


# --- memory: XLA's compiled memory analysis of a donated training step ------

MiB = 2**20
# The float32-state step holds the gradient (the loss's backward pass writes
# it) and nothing else; the quantized step may add chunk temporaries: at most
# this fraction of the float32 state it replaces.
CHUNK_TEMP_FRACTION = 1 / 16


def _loss(p, x):
  return sum(jnp.sum((x @ w) ** 2) for w in jax.tree.leaves(p))


def _step_memory(opt, params):
  """(argument bytes, temp bytes) of a training step, from rmsprop_optax.step_memory."""
  x = jax.ShapeDtypeStruct((8, next(iter(params.values())).shape[0]), jnp.float32)
  plan = rmsprop_optax.step_memory(opt, params, _loss, x)
  return plan.argument_bytes, plan.temp_bytes


def test_step_memory_reads_the_compiled_step():
  """The helper's figures are XLA's for a step written out here, and the state's bytes its shapes'."""
  params = {
    'w': jax.ShapeDtypeStruct((512, 1024), jnp.float32),
    'b': jax.ShapeDtypeStruct((1024,), jnp.float32),
  }
  x = jax.ShapeDtypeStruct((8, 512), jnp.float32)
  opt = rmsprop_optax.rmsprop(1e-3, momentum=0.9, accumulator_dtype=rmsprop_optax.quantized(8))
  loss = lambda p, x: jnp.sum((x @ p['w'] + p['b']) ** 2)

  def step(params, state, x):
    updates, state = opt.update(jax.grad(loss)(params, x), state, params)
    return optax.apply_updates(params, updates), state

  state = jax.eval_shape(opt.init, params)
  m = jax.jit(step, donate_argnums=(0, 1)).lower(params, state, x).compile().memory_analysis()
  plan = rmsprop_optax.step_memory(opt, params, loss, x)
  assert plan.temp_bytes == m.temp_size_in_bytes
  assert plan.argument_bytes == m.argument_size_in_bytes
  assert plan.peak_bytes == (
    m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes + m.temp_size_in_bytes
  )
  # nu and the momentum buffer: codes (1 byte) and a scale per 256 for w, float32 for b; the count.
  assert plan.state_bytes == 2 * (512 * 1024 + 4 * 512 * 4 + 4 * 1024) + 4
  # Without a loss the gradients are an argument: params, grads and state.
  assert (
    rmsprop_optax.step_memory(opt, params).argument_bytes
    == 2 * 4 * (512 * 1024 + 1024) + plan.state_bytes
  )


MEMORY_KINDS = {
  # kind: (float32-state optimizer, quantized one), the same settings.
  'plain_8': ({}, rmsprop_optax.quantized(8)),
  'plain_4': ({}, rmsprop_optax.quantized(4)),
  'bias_correction': ({'bias_correction': True, 'centered': True}, rmsprop_optax.quantized(8)),
  'centered_momentum': ({'centered': True, 'momentum': 0.9}, rmsprop_optax.quantized(8)),
  'nesterov_decoupled_decay': (
    {'momentum': 0.9, 'nesterov': True, 'weight_decay': 0.1, 'decoupled_weight_decay': True},
    rmsprop_optax.quantized(8),
  ),
  'torch_momentum': (
    {'momentum': 0.9, 'lr_in_momentum': False, 'eps_in_sqrt': False},
    rmsprop_optax.quantized(8),
  ),
  # The sum g + wd * p before the chunked loop was a full-size buffer of its own.
  'coupled_decay': ({'weight_decay': 0.1}, rmsprop_optax.quantized(8)),
  'coupled_decay_masked_momentum': (
    {'weight_decay': 0.1, 'weight_decay_mask': lambda u: {k: True for k in u}, 'momentum': 0.9},
    rmsprop_optax.quantized(8),
  ),
  'float_map_plain': ({}, rmsprop_optax.quantized(8, map='float')),
  'float_map_centered_momentum': (
    {'centered': True, 'momentum': 0.9},
    rmsprop_optax.quantized(8, map='float'),
  ),
}


@pytest.mark.parametrize(
  'leaves, shape', [(1, (4096, 4096)), (16, (1024, 1024))], ids=['one_leaf', 'many_leaves']
)
@pytest.mark.parametrize('kind', sorted(MEMORY_KINDS))
def test_quantized_step_temp_is_the_float32_steps_plus_a_chunk(kind, leaves, shape):
  params = {f'w{i}': jax.ShapeDtypeStruct(shape, jnp.float32) for i in range(leaves)}
  kw, spec = MEMORY_KINDS[kind]
  float32 = rmsprop_optax.rmsprop(1e-3, **kw)
  quantized = rmsprop_optax.rmsprop(1e-3, accumulator_dtype=spec, **kw)
  f32_args, f32_temp = _step_memory(float32, params)
  q_args, q_temp = _step_memory(quantized, params)
  state_f32 = leaves * np.prod(shape) * 4 * (1 + kw.get('centered', False) + ('momentum' in kw))
  assert q_temp - f32_temp <= CHUNK_TEMP_FRACTION * state_f32, (q_temp / MiB, f32_temp / MiB)
  # So the whole step's peak is below the float32-state step's.
  assert (q_args + q_temp) / (f32_args + f32_temp) < 0.85


def _scan_loss(p, x):
  """Layers stacked on a leading axis, run by a ``lax.scan`` (as ``nn.scan`` holds them)."""
  h, _ = jax.lax.scan(lambda h, w: (jnp.tanh(h @ w), None), x, p['w'])
  return jnp.sum(h**2)


def _kernel_loss(p, x):
  """A (3, 3, C, C) kernel used as one (9 C, C) matrix; its gradient is laid out row-major."""
  w = p['w']
  return jnp.sum((x @ w.reshape(-1, w.shape[-1])) ** 2)


LEADING_AXES = {
  # name: (shape, loss, batch shape); none has rows enough to cut into chunks.
  'stacked_layers': ((16, 1024, 1024), _scan_loss, (8, 1024)),
  'few_long_rows': ((8, 2**21), _loss, (8, 8)),
  'conv_kernel': ((3, 3, 1024, 1024), _kernel_loss, (8, 9 * 1024)),
}


@pytest.mark.parametrize('kind', ['plain_8', 'plain_4', 'centered_momentum'])
@pytest.mark.parametrize('leaf', sorted(LEADING_AXES))
def test_a_leaf_with_few_rows_is_cut_along_its_next_axes(leaf, kind):
  """Chunks cut the leading axes jointly, and the last axis into blocks where rows are too few."""
  shape, loss, batch = LEADING_AXES[leaf]
  params = {'w': jax.ShapeDtypeStruct(shape, jnp.float32)}
  x = jax.ShapeDtypeStruct(batch, jnp.float32)
  kw, spec = MEMORY_KINDS[kind]
  f32 = rmsprop_optax.step_memory(rmsprop_optax.rmsprop(1e-3, **kw), params, loss, x)
  q = rmsprop_optax.step_memory(
    rmsprop_optax.rmsprop(1e-3, accumulator_dtype=spec, **kw), params, loss, x
  )
  state_f32 = np.prod(shape) * 4 * (1 + kw.get('centered', False) + ('momentum' in kw))
  # Cut along the first axis only (or not at all), these held 0.56 to 2.51x
  # their float32 state more.
  assert q.temp_bytes - f32.temp_bytes <= CHUNK_TEMP_FRACTION * state_f32, (
    q.temp_bytes / MiB,
    f32.temp_bytes / MiB,
  )


@pytest.mark.parametrize('kind', ['plain_8', 'centered_momentum'])
def test_a_convolutional_networks_kernel_gradients_are_copied_one_at_a_time(kind):
  """XLA:CPU lays a convolution's kernel gradient out in another order than the kernel's.

  The chunk loop takes it in the kernel's (row-major) order, so each is
  copied once; the copies do not add up over the layers.
  """
  layers = 8
  params = {f'w{i}': jax.ShapeDtypeStruct((3, 3, 512, 512), jnp.float32) for i in range(layers)}
  x = jax.ShapeDtypeStruct((2, 16, 16, 512), jnp.float32)

  def loss(p, x):
    for i in range(layers):
      y = jax.lax.conv_general_dilated(
        x, p[f'w{i}'], (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC')
      )
      x = jnp.tanh(y)
    return jnp.sum(x**2)

  kw, spec = MEMORY_KINDS[kind]
  f32 = rmsprop_optax.step_memory(rmsprop_optax.rmsprop(1e-3, **kw), params, loss, x)
  q = rmsprop_optax.step_memory(
    rmsprop_optax.rmsprop(1e-3, accumulator_dtype=spec, **kw), params, loss, x
  )
  leaf = 9 * 512 * 512 * 4
  state_f32 = layers * leaf * (1 + kw.get('centered', False) + ('momentum' in kw))
  # Measured, 8-bit / float32: 81.0 / 87.0 MiB (plain), 86.0 / 81.0 MiB (centered + momentum).
  assert q.temp_bytes - f32.temp_bytes <= min(leaf, CHUNK_TEMP_FRACTION * state_f32), (
    q.temp_bytes / MiB,
    f32.temp_bytes / MiB,
  )


@pytest.mark.parametrize(
  'leaves, shape', [(1, (4096, 4096)), (16, (1024, 1024))], ids=['one_leaf', 'many_leaves']
)
@pytest.mark.parametrize('weight_decay', [0.0, 0.01])
def test_the_bitsandbytes_preset_step_temp_is_its_32_bit_forms_plus_a_chunk(
  weight_decay, leaves, shape
):
  """bnb's 8-bit parity mode is chunked too (with bnb's rounding, checked code for code)."""
  params = {f'w{i}': jax.ShapeDtypeStruct(shape, jnp.float32) for i in range(leaves)}
  f32_args, f32_temp = _step_memory(
    presets.bitsandbytes(1e-3, weight_decay=weight_decay, optim_bits=32), params
  )
  q_args, q_temp = _step_memory(presets.bitsandbytes(1e-3, weight_decay=weight_decay), params)
  state_f32 = leaves * np.prod(shape) * 4
  # Stepped whole it held 2.0x the float32 state more (3.0x with weight decay).
  assert q_temp - f32_temp <= CHUNK_TEMP_FRACTION * state_f32, (q_temp / MiB, f32_temp / MiB)
  assert (q_args + q_temp) / (f32_args + f32_temp) < 0.8


@pytest.mark.parametrize('kind', ['plain_8', 'plain_4', 'centered_momentum', 'coupled_decay'])
def test_a_vector_without_whole_blocks_is_stepped_in_runs(kind):
  """A flat vector (e.g. ``jax.flatten_util.ravel_pytree``'s) of no whole number of blocks."""
  n = 2**24 + 100
  params = {'v': jax.ShapeDtypeStruct((n,), jnp.float32)}
  kw, spec = MEMORY_KINDS[kind]
  # A gradient XLA writes out in both steps (an elementwise one fuses into the float32 update).
  loss = lambda p, x: jnp.sum((x[:, None] * p['v'][None]) ** 2 @ jnp.ones((n, 2)))
  x = jax.ShapeDtypeStruct((8,), jnp.float32)
  f32 = rmsprop_optax.step_memory(rmsprop_optax.rmsprop(1e-3, **kw), params, loss, x)
  q = rmsprop_optax.step_memory(
    rmsprop_optax.rmsprop(1e-3, accumulator_dtype=spec, **kw), params, loss, x
  )
  state_f32 = n * 4 * (1 + kw.get('centered', False) + ('momentum' in kw))
  # Stepped whole, as one row, it held 224 MiB more (plain) and 609 MiB (centered + momentum).
  assert q.temp_bytes - f32.temp_bytes <= CHUNK_TEMP_FRACTION * state_f32, (
    q.temp_bytes / MiB,
    f32.temp_bytes / MiB,
  )


@pytest.mark.parametrize('shape', [(4096, 4096), (2**22 + 100,)], ids=['rows', 'vector'])
@pytest.mark.parametrize('spec', [Q8, QF], ids=['dynamic', 'float'])
def test_the_chunk_loop_copies_no_buffer(shape, spec):
  """Every read of an old slab comes before the write over it, so XLA copies nothing per chunk.

  Writing the scales before the step's output made XLA copy each scale array
  twice per chunk (8% of the step's time). With the float map, XLA recomputed
  the cheap dequantization inside the output's fusion, after the codes were
  written, and copied the whole codes array every chunk (4x the step's time).
  """
  opt = rmsprop_optax.rmsprop(1e-3, momentum=0.9, centered=True, accumulator_dtype=spec)
  params = {'w': jax.ShapeDtypeStruct(shape, jnp.float32)}
  state = jax.eval_shape(opt.init, params)

  def step(params, state, grads):
    updates, state = opt.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  text = jax.jit(step, donate_argnums=(0, 1)).lower(params, state, params).compile().as_text()
  bodies = re.findall(r'while\(.*?body=(%[\w.\-]+)', text)
  assert len(bodies) == 2, bodies  # the second moments' step, the momentum's
  for name in bodies:
    start = text.index('\n' + name + ' ')
    body = text[start : text.index('\n}\n', start)].split('\n')
    # Arrays only: the loop counter's scalar copy costs nothing.
    copies = [line.strip()[:120] for line in body if re.search(r'\[\d[^\]]*\]\S* copy\(', line)]
    assert not copies, copies


def test_multisteps_holds_the_new_codes_beside_the_old():
  """optax.MultiSteps selects between the old and new inner state: one extra byte per element."""
  params = {'w': jax.ShapeDtypeStruct((4096, 4096), jnp.float32)}
  f32_args, f32_temp = _step_memory(optax.MultiSteps(rmsprop_optax.rmsprop(1e-3), 4), params)
  q_args, q_temp = _step_memory(
    optax.MultiSteps(rmsprop_optax.rmsprop(1e-3, accumulator_dtype=Q8), 4), params
  )
  codes = 4096 * 4096
  state_f32 = 4 * codes
  assert q_temp - f32_temp <= codes + CHUNK_TEMP_FRACTION * state_f32, (
    q_temp / MiB,
    f32_temp / MiB,
  )
  # Measured: 288.6 MiB against 320.1.
  assert (q_args + q_temp) / (f32_args + f32_temp) < 0.92


def test_the_program_carries_one_copy_of_the_code_tables():
  """A new leaf shape adds its own code, not another copy of the lookup tables.

  The bucket table alone has 65,538 entries (at least that many characters of
  program text per copy); measured growth is about 36,000 characters per leaf.
  """

  def text_chars(leaves):
    params = {f'w{i}': jax.ShapeDtypeStruct((64 + i, 128), jnp.float32) for i in range(leaves)}
    opt = rmsprop_optax.rmsprop(1e-3, momentum=0.9, centered=True, accumulator_dtype=Q8)
    state = jax.eval_shape(opt.init, params)
    return len(jax.jit(opt.update).lower(params, state).as_text())

  per_leaf = (text_chars(12) - text_chars(2)) / 10
  assert per_leaf < 65_538, per_leaf
