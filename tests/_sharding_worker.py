"""Sharding checks on 8 virtual CPU devices, run in a subprocess by test_sharding.py.

``python tests/_sharding_worker.py CASE`` forces 8 host devices before JAX
starts (the rest of the suite keeps one), runs one case and prints a line
``RESULT {json}`` with what it measured; any failure is a traceback and exit
status 1. Cases use JAX's own machinery only: ``jax.sharding.Mesh`` (Auto
axes), ``jax.make_mesh(..., axis_types=Explicit)`` under ``jax.set_mesh``,
``NamedSharding``, ``jax.jit`` and ``jax.shard_map``.

The params hold both layouts at once (fewer compilations on a 2-core CI
machine): ``dm_*`` leaves use a Megatron-like data x model layout and
``fsdp_*`` leaves are split 8 ways over both axes (FSDP); ``*_b2`` is
replicated.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any

import _eight_devices  # noqa: F401  (before JAX: 8 virtual CPU devices)
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _optimizer_zoo as zoo  # noqa: E402
from _harness import max_rel_error  # noqa: E402

import rmsprop_optax  # noqa: E402
from rmsprop_optax import _quantize, _transforms  # noqa: E402

# 20 sharded steps vs the same 20 steps on one device, float32, relative to
# the largest element of each leaf (_harness.max_rel_error): the same
# elementwise arithmetic on every shard, so only a different fusion per shard
# shape may change a few last bits.
STEPS = 20
SHARDED_RTOL = 1e-6
# End to end with the loss on a data-sharded batch: the loss curves agree this
# closely (the gradients differ in their last bits; see case_train).
TRAIN_LOSS_RTOL = 1e-4
# Every preset function, each with momentum and centering where it has them
# (the Explicit-mesh case runs these to keep CI time down; Auto runs all).
EXPLICIT_OPTIMIZERS = (
  'pytorch_centered_momentum',
  'keras_centered_momentum',
  'tf1_centered_momentum',
  'timm_tf_centered_momentum',
  'graves2013',
  'dqn_nature',
  'lasagne',
  'scheduled_centered_momentum',
  'bias_corrected_momentum',
)
TRAIN_OPTIMIZERS = (
  'pytorch',
  'keras_centered_momentum',
  'graves2013',
  'scheduled_centered_momentum',
)

AXES = ('data', 'model')
LAYOUTS = {
  'dm': {'w1': P(None, 'model'), 'b1': P('model'), 'w2': P('model', None), 'b2': P()},
  'fsdp': {'w1': P(AXES, None), 'b1': P(AXES), 'w2': P(AXES, None), 'b2': P()},
}
SPECS = {f'{lay}_{k}': s for lay, specs in LAYOUTS.items() for k, s in specs.items()}
BATCH_SPEC = P('data', None)


def auto_mesh() -> Mesh:
  return Mesh(np.array(jax.devices()[:8]).reshape(2, 4), AXES)


def explicit_mesh() -> Mesh:
  return jax.make_mesh((2, 4), AXES, axis_types=(AxisType.Explicit,) * 2)


def make_problem(seed: int = 0) -> tuple[dict[str, jax.Array], jax.Array, jax.Array]:
  k = jax.random.split(jax.random.key(seed), 6)
  params = {}
  for i, lay in enumerate(LAYOUTS):
    params[f'{lay}_w1'] = jax.random.normal(k[2 * i], (16, 32)) / 4
    params[f'{lay}_b1'] = jnp.zeros(32)
    params[f'{lay}_w2'] = jax.random.normal(k[2 * i + 1], (32, 8)) / 6
    params[f'{lay}_b2'] = jnp.zeros(8)
  x = jax.random.normal(k[4], (64, 16))
  y = jnp.sin(x[:, :8]) + 0.1 * jax.random.normal(k[5], (64, 8))
  return params, x, y


def make_loss(gather: bool) -> Callable[..., jax.Array]:
  """The sum of two MLP regression losses, one per layout.

  ``gather``: on an Explicit-axis mesh the model states its communication, as
  FSDP code does: params are all-gathered (``jax.sharding.reshard`` to
  replicated) before use; their gradients come back with the params' sharding.
  """

  def loss(p: dict[str, jax.Array], x: jax.Array, y: jax.Array) -> jax.Array:
    if gather:
      p = {k: jax.sharding.reshard(v, P()) for k, v in p.items()}
    total = jnp.zeros(())
    for lay in LAYOUTS:
      h = jnp.tanh(x @ p[f'{lay}_w1'] + p[f'{lay}_b1'])
      total += jnp.mean((h @ p[f'{lay}_w2'] + p[f'{lay}_b2'] - y) ** 2)
    return total

  return loss


def shard(tree: Any, mesh: Mesh, specs: Any) -> Any:
  return jax.device_put(tree, jax.tree.map(lambda s: NamedSharding(mesh, s), specs))


def same_sharding(a: jax.Array, b: jax.Array) -> bool:
  return a.sharding.is_equivalent_to(b.sharding, a.ndim)


def check_state_like_params(
  state: Any, params: dict[str, jax.Array], name: str, where: str
) -> dict[str, int]:
  """Every param-shaped state leaf is sharded like its param; counts replicated.

  Returns the number of leaves checked per buffer kind (``nu``, ``mu``,
  ``trace``) and asserts every expected kind was found for every param.
  """
  seen: dict[str, int] = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
    keys = [getattr(k, 'name', getattr(k, 'key', None)) for k in path]
    if keys[-1] in params:
      kind = keys[-2]
      param = params[keys[-1]]
      assert leaf.shape == param.shape, (where, name, keys, leaf.shape, param.shape)
      assert same_sharding(leaf, param), (
        f'{where}{name}: state leaf {jax.tree_util.keystr(path)} has sharding '
        f'{leaf.sharding}, its param has {param.sharding}'
      )
      seen[kind] = seen.get(kind, 0) + 1
    else:
      # A step count: a replicated int32 scalar.
      assert leaf.shape == () and leaf.dtype == jnp.int32, (where, name, keys, leaf)
      assert leaf.sharding.is_fully_replicated, (where, name, keys, leaf.sharding)
  expected = {kind: len(params) for kind in zoo.expected_buffers(name)}
  assert seen == expected, f'{where}{name}: buffers found {seen}, expected {expected}'
  return seen


def _max_rel_err(a: Any, b: Any) -> float:
  """``_harness.max_rel_error`` over the array leaves (the step counts are compared exactly)."""

  def arrays(tree: Any) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree.leaves(tree) if np.ndim(x) > 0]

  return max_rel_error(arrays(a), arrays(b))


def _apply_step(opt: optax.GradientTransformation) -> Callable:
  @jax.jit
  def apply(params, state, grads):
    updates, state = opt.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  return apply


def _single_device_runs(names: Iterable[str]) -> dict[str, tuple[list[Any], Any, Any]]:
  """STEPS steps of every optimizer on device 0: gradient stream, final params and state."""
  params0, x, y = jax.device_put(make_problem(), jax.devices()[0])
  grad_fn = jax.jit(jax.grad(make_loss(gather=False)))
  runs = {}
  for name in names:
    opt = zoo.make(name)
    params, state = params0, jax.jit(opt.init)(params0)
    apply = _apply_step(opt)
    grads_seq = []
    for _ in range(STEPS):
      grads = jax.device_get(grad_fn(params, x, y))
      grads_seq.append(grads)
      params, state = apply(params, state, grads)
    runs[name] = (grads_seq, params, state)
  return runs


def _sharded(mesh: Mesh, refs: dict[str, tuple[list[Any], Any, Any]]) -> dict[str, Any]:
  """Sharded like the params under jit(init) and after jitted steps; equal to one device.

  For every optimizer in the zoo: ``jax.jit(opt.init)`` on sharded params
  gives every ``nu``/``mu``/momentum buffer the sharding of its param (counts
  replicated), and so do STEPS jitted steps. Both runs see the same gradients
  (computed once on one device and sent to the params' sharding), so only the
  optimizer is compared: it is elementwise, and SHARDED_RTOL leaves room only
  for the compiler fusing differently per shard shape. (A loss evaluated on a
  sharded batch sums in another order; RMSprop normalises each element, so a
  gradient element near zero whose last bits change can move its update by up
  to ``lr / sqrt(1 - decay)``: case_train measures that end to end.)
  """
  params0, _, _ = make_problem()
  worst = 0.0
  per_opt = {}
  checked = 0
  for name, (grads_seq, ref_p, ref_s) in refs.items():
    opt = zoo.make(name)
    apply = _apply_step(opt)
    p = p0 = shard(params0, mesh, SPECS)
    s = jax.jit(opt.init)(p)
    checked += sum(check_state_like_params(s, p, name, 'jit(init): ').values())
    for g in grads_seq:
      p, s = apply(p, s, shard(g, mesh, SPECS))
    for k in p:
      assert same_sharding(p[k], p0[k]), (name, k, p[k].sharding)
    checked += sum(check_state_like_params(s, p, name, f'after {STEPS} jitted steps: ').values())
    for a, b in zip(jax.tree.leaves(s), jax.tree.leaves(ref_s)):
      if np.ndim(a) == 0:  # the step counts agree exactly
        assert int(a) == int(b) == STEPS, (name, a, b)
    err = max(_max_rel_err(p, ref_p), _max_rel_err(s, ref_s))
    assert err <= SHARDED_RTOL, f'{name}: relative error {err:.3g} > {SHARDED_RTOL}'
    per_opt[name] = err
    worst = max(worst, err)
  return {'max_rel_err': worst, 'per_optimizer': per_opt, 'state_leaves_checked': checked}


def case_auto() -> dict[str, Any]:
  """Auto-axis mesh (jax.sharding.Mesh), every optimizer in the zoo."""
  return _sharded(auto_mesh(), _single_device_runs(zoo.OPTIMIZERS))


def case_quantized() -> dict[str, Any]:
  """quantized(8) and quantized(4) state: codes and scales sharded like the params.

  Blocks run along the last axis, so 8-bit codes have the param's shape and
  sharding, 4-bit codes half its last axis and the scales one element per
  block: every one of them takes the param's PartitionSpec. Twenty jitted
  steps on sharded params give the same codes as on one device (the blockwise
  maximum never crosses a shard here) and the same params within SHARDED_RTOL.
  Chunks of 1024 elements, so that every quantized leaf is stepped in a loop:
  rows (``dm_w``, ``fsdp_w``), a stack of layers cut along its sharded middle
  axis (``stack_w``) and two long rows cut along their sharded blocks
  (``rows_w``).
  """
  mesh = auto_mesh()
  specs = {
    'dm_w': P(None, 'model'),
    'fsdp_w': P(AXES, None),
    'stack_w': P(None, AXES, None),
    'rows_w': P(None, AXES),
    'small_b': P(),
  }
  keys = jax.random.split(jax.random.key(7), 5)
  params0 = {
    'dm_w': jax.random.normal(keys[0], (64, 512)) / 8,
    'fsdp_w': jax.random.normal(keys[1], (64, 512)) / 8,
    'stack_w': jax.random.normal(keys[3], (4, 128, 256)) / 8,
    'rows_w': jax.random.normal(keys[4], (2, 16384)) / 8,
    'small_b': jnp.zeros(16),
  }
  default_chunk = _quantize.CHUNK_ELEMENTS
  _quantize.CHUNK_ELEMENTS = 1024
  _transforms._jit_with_constants.cache_clear()
  views = {
    name: _quantize.view_shape(
      _quantize.QuantizedArray(None, None, params0[name].shape, 8, 64, False, unsigned_zero=False)  # type: ignore[arg-type]
    )
    for name in ('stack_w', 'rows_w')
  }
  assert views == {'stack_w': (4, 128, 256), 'rows_w': (2, 256, 64)}, views
  assert _quantize.chunk_counts(views['stack_w']) == (1, 16)
  assert _quantize.chunk_counts(views['rows_w']) == (1, 32)
  grads_seq = [
    jax.tree.map(lambda p, i=i: jax.random.normal(jax.random.fold_in(keys[2], i), p.shape), params0)
    for i in range(STEPS)
  ]
  out: dict[str, Any] = {}
  for label, bits, code_map in (('q8', 8, 'dynamic'), ('q4', 4, 'dynamic'), ('q8f', 8, 'float')):
    spec = rmsprop_optax.quantized(bits, block_size=64, min_size=1024, map=code_map)
    opt = rmsprop_optax.rmsprop(1e-2, momentum=0.9, centered=True, accumulator_dtype=spec)
    apply = _apply_step(opt)
    ref_p = jax.device_put(params0, jax.devices()[0])
    ref_s = jax.jit(opt.init)(ref_p)
    for g in grads_seq:
      ref_p, ref_s = apply(ref_p, ref_s, g)

    p = shard(params0, mesh, specs)
    s = jax.jit(opt.init)(p)
    checked = 0
    for stage in ('jit(init)', f'after {STEPS} jitted steps'):
      if stage != 'jit(init)':
        for g in grads_seq:
          p, s = apply(p, s, shard(g, mesh, specs))
      is_tree = rmsprop_optax.QuantizedTree.__instancecheck__
      for path, tree in jax.tree_util.tree_flatten_with_path(s, is_leaf=is_tree)[0]:
        if not is_tree(tree):
          continue
        for name in ('dm_w', 'fsdp_w', 'stack_w', 'rows_w'):
          want = NamedSharding(mesh, specs[name])
          for part in (tree.codes[name], tree.scale[name]):
            assert want.is_equivalent_to(part.sharding, part.ndim), (
              f'{label} {stage}: {jax.tree_util.keystr(path)}[{name!r}] has '
              f'{part.sharding}, its param {p[name].sharding}'
            )
          checked += 1
    assert checked == 4 * 3 * 2, checked  # 4 leaves x (nu, mu, trace) x 2 stages
    codes = [x for x in jax.tree.leaves(s) if x.dtype == jnp.uint8]
    ref_codes = [x for x in jax.tree.leaves(ref_s) if x.dtype == jnp.uint8]
    equal = sum(int(np.sum(np.asarray(a) == np.asarray(b))) for a, b in zip(codes, ref_codes))
    total = sum(a.size for a in codes)
    err = _max_rel_err(p, ref_p)
    assert err <= SHARDED_RTOL, f'{label}: params relative error {err:.3g} > {SHARDED_RTOL}'
    out[label] = {'codes_equal': equal, 'codes_total': total, 'params_rel_err': err}
  _quantize.CHUNK_ELEMENTS = default_chunk
  _transforms._jit_with_constants.cache_clear()
  return out


def case_explicit() -> dict[str, Any]:
  """Explicit-axis mesh (jax.make_mesh(..., AxisType.Explicit)) under jax.set_mesh."""
  # The one-device reference runs outside the mesh context (a context mesh
  # rejects single-device arrays).
  refs = _single_device_runs(EXPLICIT_OPTIMIZERS)
  mesh = explicit_mesh()
  with jax.set_mesh(mesh):
    return _sharded(mesh, refs)


def case_train() -> dict[str, Any]:
  """End to end: loss on a data-sharded batch, params sharded (Auto mesh), vs one device.

  The gradients themselves differ in their last bits here (the batch sum runs
  in another order), so this measures the param error and asserts that the
  loss curves agree to TRAIN_LOSS_RTOL. Also documents that optax.rmsprop's
  jit(init) state is not sharded like the params on an Auto-axis mesh.
  """
  params, x, y = make_problem()
  mesh = auto_mesh()
  p = shard(params, mesh, SPECS)
  xs, ys = shard(x, mesh, BATCH_SPEC), shard(y, mesh, BATCH_SPEC)
  single = jax.device_put((params, x, y), jax.devices()[0])
  out: dict[str, Any] = {}
  for name in TRAIN_OPTIMIZERS:
    opt = zoo.make(name)

    @jax.jit
    def step(params, state, x, y, opt=opt):
      value, grads = jax.value_and_grad(make_loss(gather=False))(params, x, y)
      updates, state = opt.update(grads, state, params)
      return optax.apply_updates(params, updates), state, value

    curves = []
    finals = []
    for args in (single, (p, xs, ys)):
      params_, x_, y_ = args
      state = jax.jit(opt.init)(params_)
      losses = []
      for _ in range(STEPS):
        params_, state, value = step(params_, state, x_, y_)
        losses.append(float(value))
      curves.append(np.array(losses))
      finals.append(params_)
    assert curves[0][-1] < curves[0][0], (name, curves[0])
    loss_err = float(np.max(np.abs(curves[1] - curves[0]) / np.abs(curves[0])))
    assert loss_err <= TRAIN_LOSS_RTOL, (name, loss_err)
    out[name] = {'loss_rel_err': loss_err, 'param_rel_err': _max_rel_err(finals[1], finals[0])}

  # optax.zeros_like has no data dependence on the param: XLA's sharding
  # propagation has nothing to follow and the state lands on one device.
  theirs = jax.jit(optax.rmsprop(1e-2, momentum=0.9, centered=True).init)(p)
  ours = jax.jit(rmsprop_optax.rmsprop(1e-2, momentum=0.9, centered=True).init)(p)
  single_device = [
    jax.tree_util.keystr(path)
    for path, leaf in jax.tree_util.tree_flatten_with_path(theirs)[0]
    if len(leaf.sharding.device_set) == 1
  ]
  # Every optax buffer (nu, mu, trace for each param) sits on device 0, even
  # those of the replicated params.
  assert len(single_device) == 3 * len(p), f'optax now shards its state? {single_device}'
  check_state_like_params(ours, p, 'pytorch_centered_momentum', 'ours vs optax: ')
  out['optax_rmsprop_buffers_on_one_device'] = len(single_device)
  return out


def _spec(a: Any) -> tuple[Any, ...]:
  spec = tuple(a.sharding.spec)
  return spec + (None,) * (len(a.shape) - len(spec))


def _eval_shape(mesh: Mesh, explicit: bool) -> dict[str, Any]:
  """jax.eval_shape(opt.init, params): shapes, dtypes, bytes, layout; nothing allocated.

  On an Explicit-axis mesh the abstract state carries its sharding. On an
  Auto-axis mesh shardings are the compiler's decision, so the plan comes
  from ``jax.jit(opt.init).lower(params).compile().output_shardings``
  (compiled, not run). Half the params are bfloat16: their buffers are
  planned as float32.
  """
  params, _, _ = make_problem()
  p = shard(params, mesh, SPECS)
  p = {k: v.astype(jnp.bfloat16) if k.startswith('fsdp') else v for k, v in p.items()}
  report = {}
  for name in zoo.OPTIMIZERS:
    opt = zoo.make(name)
    live = len(jax.live_arrays())
    abstract = jax.eval_shape(opt.init, p)
    compiled = jax.jit(opt.init).lower(p).compile()
    assert len(jax.live_arrays()) == live, 'planning allocated device arrays'
    real = compiled(p)
    assert jax.tree.structure(abstract) == jax.tree.structure(real)
    planned = planned_per_device = 0
    leaves = zip(
      jax.tree.leaves(abstract), jax.tree.leaves(compiled.output_shardings), jax.tree.leaves(real)
    )
    for a, sharding, r in leaves:
      assert isinstance(a, jax.ShapeDtypeStruct), type(a)
      assert (a.shape, a.dtype) == (r.shape, r.dtype), (name, a, r)
      assert sharding.is_equivalent_to(r.sharding, r.ndim), (name, sharding, r.sharding)
      if a.ndim:
        assert a.dtype == jnp.float32, (name, a)  # float32 accumulators for bf16 params too
        if explicit:  # an abstract mesh's sharding: compare the partition specs
          assert _spec(a) == _spec(r), (name, a.sharding, r.sharding)
      planned += a.size * a.dtype.itemsize
      planned_per_device += int(np.prod(sharding.shard_shape(a.shape))) * a.dtype.itemsize
    actual = sum(r.nbytes for r in jax.tree.leaves(real))
    actual_per_device = sum(r.addressable_shards[0].data.nbytes for r in jax.tree.leaves(real))
    assert (planned, planned_per_device) == (actual, actual_per_device), name
    report[name] = {'bytes': planned, 'bytes_on_device_0': planned_per_device}
  return report


def case_eval_shape() -> dict[str, Any]:
  result = {'auto': _eval_shape(auto_mesh(), explicit=False)}
  mesh = explicit_mesh()
  with jax.set_mesh(mesh):
    result['explicit'] = _eval_shape(mesh, explicit=True)
  return result


def case_data_parallel() -> dict[str, Any]:
  """The package's data-parallel example on 8 devices matches one-device training."""
  from rmsprop_optax.demos import data_parallel

  result = data_parallel.run(fast=True)
  m = result['metrics']
  sm, jt = m['shard_map'], m['jit']
  assert sm['devices'] == jt['devices'] == 8, m
  assert sm['final_loss'] < 0.5 * sm['initial_loss'], m
  # An 8x too large gradient (psum instead of pmean) moves the loss curve by
  # ~3e-3 relative in 60 steps (eps no longer negligible): this catches it.
  assert sm['max_rel_diff_vs_one_device'] <= data_parallel.MATCH_RTOL, m
  assert jt['max_rel_diff_vs_one_device'] <= data_parallel.MATCH_RTOL, m
  return m


def case_step_memory() -> dict[str, Any]:
  """Per-device memory of a donated training step (rmsprop_optax.step_memory), float32 vs 8-bit,

  plain and centered with momentum.

  One 4096x4096 leaf in an FSDP layout (rows over all 8 devices) and a data x
  model layout (columns over 'model'); 16 layers of (1024, 1024) stacked on a
  leading axis for a layer ``scan``, the middle axis over all 8 devices; and a
  few long rows, (8, 2**21), the columns over all 8 (the leading axes alone
  cannot cut these two into chunks). The step computes its gradient from a
  least-squares loss on a replicated batch (through the ``scan`` for the
  stack). Also counts the collectives in each compiled step: the 8-bit step
  must add none.
  """
  mesh = auto_mesh()

  def loss(p: Any, x: Any) -> Any:
    if p['w'].ndim == 3:
      h, _ = jax.lax.scan(lambda h, w: (jnp.tanh(h @ w), None), x, p['w'])
      return jnp.sum(h**2)
    return jnp.sum((x @ p['w']) ** 2)

  out: dict[str, Any] = {}
  for layout, shape, spec in (
    ('fsdp', (4096, 4096), P(AXES, None)),
    ('dm', (4096, 4096), P(None, 'model')),
    ('stacked', (16, 1024, 1024), P(None, AXES, None)),
    ('few_rows', (8, 2**21), P(None, AXES)),
  ):
    params = {'w': jax.ShapeDtypeStruct(shape, jnp.float32, sharding=NamedSharding(mesh, spec))}
    x = jax.ShapeDtypeStruct((8, shape[-2]), jnp.float32, sharding=NamedSharding(mesh, P()))
    cm = {'centered': True, 'momentum': 0.9}
    QF = rmsprop_optax.quantized(8, map='float')  # noqa: N806
    for name, opt in (
      ('float32', rmsprop_optax.rmsprop(1e-3)),
      ('q8', rmsprop_optax.rmsprop(1e-3, accumulator_dtype=rmsprop_optax.quantized(8))),
      ('float32_cm', rmsprop_optax.rmsprop(1e-3, **cm)),
      ('q8_cm', rmsprop_optax.rmsprop(1e-3, accumulator_dtype=rmsprop_optax.quantized(8), **cm)),
      ('q8f', rmsprop_optax.rmsprop(1e-3, accumulator_dtype=QF)),
      ('q8f_cm', rmsprop_optax.rmsprop(1e-3, accumulator_dtype=QF, **cm)),
    ):
      plan = rmsprop_optax.step_memory(opt, params, loss, x)
      hlo = (
        jax.jit(lambda p, s, x, opt=opt: _loss_step(opt, loss, p, s, x))
        .lower(params, jax.eval_shape(jax.jit(opt.init), params), x)
        .compile()
        .as_text()
      )
      out[f'{layout}_{name}'] = {
        **plan._asdict(),
        'collectives': sum(
          hlo.count(f' {op}(')
          for op in (
            'all-gather',
            'all-reduce',
            'all-to-all',
            'collective-permute',
            'reduce-scatter',
          )
        ),
      }
  return out


def _loss_step(opt: Any, loss: Any, params: Any, state: Any, x: Any) -> Any:
  grads = jax.grad(loss)(params, x)
  updates, state = opt.update(grads, state, params)
  return optax.apply_updates(params, updates), state


CASES: dict[str, Callable[[], dict[str, Any]]] = {
  'auto': case_auto,
  'explicit': case_explicit,
  'quantized': case_quantized,
  'train': case_train,
  'eval_shape': case_eval_shape,
  'data_parallel': case_data_parallel,
  'step_memory': case_step_memory,
}


def main(argv: list[str]) -> int:
  assert jax.device_count() == 8, f'expected 8 virtual CPU devices, got {jax.devices()}'
  for name in argv or list(CASES):
    result = CASES[name]()
    print('RESULT ' + json.dumps({'case': name, **result}), flush=True)
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
