"""``python -m rmsprop_optax bench``: step time, bandwidth floor, compile time, memory.

Everything is measured in one process so the ratios compare like with like:

* step time: median seconds of one jitted ``update`` + ``apply_updates`` with
  params and state donated, for this library, ``optax.rmsprop`` with the same
  settings and ``torch.optim.RMSprop(foreach=True)`` when torch is installed.
  Ours and optax's steps are interleaved (each sample takes the next of the
  six orders of ours, optax and the A/A control) so machine drift cancels in
  the per-sample ratio ``ours / other`` (<= 1: ours is as fast or faster); the
  median and quartiles of that ratio are reported. Torch runs on the device
  that matches JAX's backend (CPU, or CUDA), alternating with ours, and is
  skipped where there is none;
* A/A control: a second, separately compiled ``optax.rmsprop`` timed in the
  same rotation. Its ratio to the first is the noise band: two identical
  programs differ by that much on this machine;
* bandwidth floor: the bytes the step must move (read params, grads and
  state, write params and state) over the bandwidth of a jitted ``a + b`` on
  float32 arrays the size of the largest tree (a stream "add": 2 reads, 1
  write, output donated), re-probed between the timed samples of each row;
  a copy probe (``a + 1``: 1 read, 1 write) is reported beside it;
* XLA traffic and kernels: the bytes the compiled step reads and writes by
  XLA's own cost model (``compiled.cost_analysis()``) and the number of
  instructions of its optimized entry computation that are neither
  parameters, tuples, bitcasts nor constants (on XLA:CPU, one kernel each;
  a GPU command buffer counts as one). Without multi-output fusion
  (XLA:CPU) each output array is its own kernel that rereads its inputs, so
  this traffic, not the floor above, is what the compiled program can reach;
* compile time against leaf count: ``jit(step).trace``, ``.lower`` and
  ``.compile`` timed separately on a tree of ``n`` 64x64 float32 leaves, with
  JAX's caches cleared before each measurement; beside it the "least" program
  with the same inputs and outputs (one trivial kernel per output array):
  on XLA:CPU, which fuses no two outputs into one kernel, about the least any
  step that keeps per-leaf state can compile to;
* peak memory: ``compiled.memory_analysis()`` (arguments + outputs - aliased +
  temporaries) against params + grads + state;
* quantized state (configs ``plain_q8``, ``centered_momentum_q8``,
  ``plain_q4``: ``accumulator_dtype=quantized(8)`` or ``quantized(4)``): each
  row times ours with quantized state, ``optax.rmsprop`` with the same
  settings, the A/A control and ours with float32 state (``float32_state``)
  in one rotation (a Williams square of four orders); it reports the state
  bytes (``jax.eval_shape(opt.init, params)``) against float32 state, the
  peak memory and XLA traffic of the donated quantized step, and the step
  time over float32-state ours and over optax. A state-bytes table gives
  float32, 8-bit and 4-bit state for every tree, and "where the time goes"
  times the parts of the 8-bit step alone on one flat leaf. ``--quick`` times
  the quantized rows on the one-leaf tree only; a row whose tree has no leaf
  of ``min_size`` (4096) elements is skipped (its state is all float32).

``--quick`` shrinks everything for CI; ``--json PATH`` writes the results;
``--one-leaf-elements N`` sets the size of the one-leaf tree (1e9 on a GPU:
``bench --trees one_leaf --one-leaf-elements 1000000000 --no-torch``).

Reading the figures on XLA:CPU
------------------------------
* Step time: the compiled step does exactly ``optax.rmsprop``'s per-element
  work (the fused kernels hold the same operations, with the same XLA traffic:
  7N plain, 10N momentum, 14N centered + momentum, N = one param array). The
  one addition is a scalar kernel for the int32 step count kept in the state;
  with bias correction optax counts too and the kernels are equal. Rows a few
  percent above 1.00 are within the A/A band: two identical programs, each
  owning its buffers, differ by that much on a shared machine.
* Bandwidth floor: XLA:CPU does no multi-output fusion, so each output array
  (params, nu, mu, momentum) is its own kernel that rereads the gradient and
  the moments. The plain step moves 7N instead of the 5N it must, which caps
  it at 71% of the floor (momentum 10N for 7N, centered + momentum 14N for
  9N); against its own XLA traffic it runs at memory speed. Tried: the flag
  ``--xla_cpu_use_multi_output_fusion`` (rejected by jaxlib 0.10.2 as unknown,
  and a library cannot set XLA flags for its user's ``jit``), and a
  hand-blocked in-place ``fori_loop`` over 16K-256K-element chunks
  (bit-identical and copy-free, but 2-3x slower: each chunk's kernels run on
  one thread, and it would break "state sharded like the params"). On a GPU
  XLA fuses multiple outputs into one kernel.
* Compile time: XLA's compile is most of the total, and its cost is about one
  LLVM kernel per output array. The "least" program (one trivial ``x + 1``
  kernel for each of the step's output arrays) already takes about a third to
  two thirds of optax's total, so no step that keeps one state array per
  param leaf (which sharding and checkpoints need) compiles much faster.
  Grouping all leaves with ``optax.flatten(rmsprop(...))`` was measured and
  rejected: a 500-operand concatenate and 500 slices made it compile 1.5x
  slower than optax at 500 leaves, its step took 0.65-6.9x ours, and it needed
  1.2-1.7x the peak memory. If compile time matters, stack repeated layers
  (``flax.linen.scan``, ``nnx.vmap``, a leading layer axis) so the tree has few
  leaves: the state follows the tree.
* Peak memory: 1.00x params + grads + state (donated) for both libraries: the
  step has no full-size temporaries.
* Quantized state: 8-bit state is 1 byte + 4 / 256 per element (0.254x
  float32 state on one leaf; small leaves keep float32), 4-bit 0.133x. Between
  steps that is what stays resident. The step itself is not memory-bound on
  XLA:CPU and is several times slower than the float32 step (about 3.4-9x
  on the benchmark's trees), although the state it reads and writes is 4x
  smaller: by XLA's own cost model the compiled 8-bit plain step moves
  11-13N, not 7N, because the block absmax, the normalization, the code
  lookup and the dequantization run as separate loops whose float32
  intermediates (values, normalized blocks) go through memory. The same
  temporaries make the step's peak memory 1.8-3.2x params + grads + state:
  higher than the float32-state step's peak (one leaf, plain: 273 MB against
  192 MB), so the saving is the resident state between steps, not the
  step's peak. Timed alone ("where the time goes"), the code-map gather and
  the per-element block scale of ``dequantize`` (a broadcast over the block,
  fused into the multiply; ``jnp.repeat``, a gather with per-element indices,
  was about 6x slower) cost about one float32 step together, and so does the
  code lookup: a table indexed by each value's sign, exponent and top mantissa
  bits, then one compare, exact for every float32 (``jnp.searchsorted``, an
  8-step binary search over the 255 midpoints per element, took about 10
  float32 steps with ``method='scan_unrolled'`` and 30 with the default;
  ``'compare_all'`` and ``'sort'`` were slower still). What remains is
  the separate loops: the block absmax, the normalization and the lookup
  each pass over the whole array. Not measured here: on a GPU, where XLA fuses
  elementwise loops and multiple outputs into few kernels, the step can be
  closer to memory-bound, and only there can fewer state bytes mean faster.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import itertools
import json
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rmsprop_optax import _quantize, presets
from rmsprop_optax._alias import rmsprop
from rmsprop_optax._quantize import quantized

LR = 1e-3
MOMENTUM = 0.9
COMPILE_SHAPE = (64, 64)

# name -> (ours, optax peer, torch.optim.RMSprop kwargs or None).
# The PyTorch preset keeps lr outside the momentum buffer; optax puts it
# inside. With a constant lr the two agree, so optax.rmsprop(eps_in_sqrt=False,
# decay=0.99) is the closest optax configuration.
CONFIGS: dict[str, tuple[Callable[[], Any], Callable[[], Any], dict[str, Any] | None]] = {
  'plain': (
    lambda: rmsprop(LR),
    lambda: optax.rmsprop(LR),
    {'alpha': 0.9},
  ),
  'momentum': (
    lambda: rmsprop(LR, momentum=MOMENTUM),
    lambda: optax.rmsprop(LR, momentum=MOMENTUM),
    {'alpha': 0.9, 'momentum': MOMENTUM},
  ),
  'centered_momentum': (
    lambda: rmsprop(LR, centered=True, momentum=MOMENTUM),
    lambda: optax.rmsprop(LR, centered=True, momentum=MOMENTUM),
    {'alpha': 0.9, 'momentum': MOMENTUM, 'centered': True},
  ),
  'bias_correction': (
    lambda: rmsprop(LR, bias_correction=True),
    lambda: optax.rmsprop(LR, bias_correction=True),
    None,  # torch has no bias-corrected RMSprop
  ),
  'pytorch_momentum': (
    lambda: presets.pytorch(LR, momentum=MOMENTUM),
    lambda: optax.rmsprop(LR, decay=0.99, eps=1e-8, eps_in_sqrt=False, momentum=MOMENTUM),
    {'alpha': 0.99, 'momentum': MOMENTUM},
  ),
  # Quantized state (``accumulator_dtype=quantized(bits)``): timed against
  # optax.rmsprop with the same settings and against ours with float32 state
  # (the config named in QUANTIZED), all in one rotation. Torch has no 8-bit
  # RMSprop.
  'plain_q8': (
    lambda: rmsprop(LR, accumulator_dtype=quantized(8)),
    lambda: optax.rmsprop(LR),
    None,
  ),
  'centered_momentum_q8': (
    lambda: rmsprop(LR, centered=True, momentum=MOMENTUM, accumulator_dtype=quantized(8)),
    lambda: optax.rmsprop(LR, centered=True, momentum=MOMENTUM),
    None,
  ),
  'plain_q4': (
    lambda: rmsprop(LR, accumulator_dtype=quantized(4)),
    lambda: optax.rmsprop(LR),
    None,
  ),
}

# Quantized config -> (the float32-state config it is compared with, its state label).
QUANTIZED: dict[str, tuple[str, str]] = {
  'plain_q8': ('plain', 'q8'),
  'centered_momentum_q8': ('centered_momentum', 'q8'),
  'plain_q4': ('plain', 'q4'),
}


def state_label(config: str) -> str:
  """``'float32'``, ``'q8'`` or ``'q4'``: how the config stores its state."""
  return QUANTIZED[config][1] if config in QUANTIZED else 'float32'


def one_leaf_tree(quick: bool) -> dict[str, tuple[int, ...]]:
  """One flat float32 leaf: 16M elements (quick: 256K)."""
  return {'w': ((1 << 18) if quick else (1 << 24),)}


def _tree_shapes(
  tree: str, quick: bool, one_leaf_elements: int | None
) -> dict[str, tuple[int, ...]]:
  if tree == 'one_leaf' and one_leaf_elements is not None:
    return {'w': (one_leaf_elements,)}
  return TREES[tree](quick)


def transformer_tree(quick: bool) -> dict[str, tuple[int, ...]]:
  """A GPT-like tree: embeddings, 8 blocks of 12 leaves, final norm and head (101 leaves)."""
  d, vocab, layers = (32, 256, 2) if quick else (256, 8192, 8)
  shapes: dict[str, tuple[int, ...]] = {'embed': (vocab, d), 'pos_embed': (512, d)}
  for i in range(layers):
    block = {
      'ln1_scale': (d,),
      'ln1_bias': (d,),
      'qkv_w': (d, 3 * d),
      'qkv_b': (3 * d,),
      'out_w': (d, d),
      'out_b': (d,),
      'ln2_scale': (d,),
      'ln2_bias': (d,),
      'mlp_w1': (d, 4 * d),
      'mlp_b1': (4 * d,),
      'mlp_w2': (4 * d, d),
      'mlp_b2': (d,),
    }
    shapes.update({f'block{i}/{k}': v for k, v in block.items()})
  shapes.update({'ln_f_scale': (d,), 'ln_f_bias': (d,), 'head': (d, vocab)})
  return shapes


def cnn_tree(quick: bool) -> dict[str, tuple[int, ...]]:
  """A ResNet-like tree of small leaves: 75 conv blocks of 4 leaves (300 leaves)."""
  blocks, width = (6, 8) if quick else (75, 32)
  shapes: dict[str, tuple[int, ...]] = {}
  for i in range(blocks):
    c = width * (1 + i // 25)
    shapes.update(
      {
        f'conv{i}/kernel': (3, 3, c, c),
        f'conv{i}/bias': (c,),
        f'bn{i}/scale': (c,),
        f'bn{i}/bias': (c,),
      }
    )
  return shapes


TREES: dict[str, Callable[[bool], dict[str, tuple[int, ...]]]] = {
  'one_leaf': one_leaf_tree,
  'transformer': transformer_tree,
  'cnn': cnn_tree,
}


def _materialize(
  shapes: dict[str, tuple[int, ...]], seed: int, scale: float
) -> dict[str, jax.Array]:
  # NumPy, not jax.random: one eager compile per distinct shape costs seconds.
  rng = np.random.default_rng(seed)
  return {
    k: jnp.asarray(scale * rng.standard_normal(s, dtype=np.float32)) for k, s in shapes.items()
  }


def _nbytes(tree: Any) -> int:
  return int(sum(np.prod(np.shape(x)) * jnp.result_type(x).itemsize for x in jax.tree.leaves(tree)))


def _step_fn(opt: optax.GradientTransformation) -> Any:
  def step(params: Any, state: Any, grads: Any) -> tuple[Any, Any]:
    updates, state = opt.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  return jax.jit(step, donate_argnums=(0, 1))


class _JaxRunner:
  """A donated jitted step and the buffers it threads through."""

  def __init__(self, opt: Any, params: dict[str, jax.Array], grads: dict[str, jax.Array]):
    self.step: Any = _step_fn(opt)
    self.params = jax.tree.map(jnp.copy, params)
    self.state = opt.init(self.params)
    self.grads = grads
    self.state_bytes = _nbytes(self.state)
    # Run the AOT-compiled step itself: calling the jit would compile it again.
    compiled = self.step.lower(self.params, self.state, grads).compile()
    self.memory = _memory(compiled)
    self.xla_bytes = _xla_bytes_accessed(compiled)
    self.kernels = _kernel_count(compiled)
    self.step = compiled
    self.run(1)  # warm up

  def run(self, n: int) -> float:
    jax.block_until_ready((self.params, self.state))
    t0 = time.perf_counter()
    for _ in range(n):
      self.params, self.state = self.step(self.params, self.state, self.grads)
    jax.block_until_ready((self.params, self.state))
    return (time.perf_counter() - t0) / n


class _TorchRunner:
  def __init__(
    self,
    torch: Any,
    kwargs: dict[str, Any],
    params: dict[str, jax.Array],
    grads: dict[str, jax.Array],
    device: str,
  ):
    self.torch = torch
    self.device = device
    self.params = [torch.tensor(np.asarray(p), device=device) for p in params.values()]
    for p, g in zip(self.params, grads.values()):
      p.grad = torch.tensor(np.asarray(g), device=device)
    self.opt = torch.optim.RMSprop(self.params, lr=LR, eps=1e-8, foreach=True, **kwargs)
    self.run(1)

  def _sync(self) -> None:
    if self.device == 'cuda':
      self.torch.cuda.synchronize()

  def run(self, n: int) -> float:
    with self.torch.no_grad():
      self._sync()
      t0 = time.perf_counter()
      for _ in range(n):
        self.opt.step()
      self._sync()
      return (time.perf_counter() - t0) / n


def torch_device(torch: Any) -> str | None:
  """The torch device that matches JAX's backend, or None when there is none.

  Timing JAX on a GPU against torch on the CPU would compare two machines.
  """
  backend = jax.default_backend()
  if backend == 'cpu':
    return 'cpu'
  if backend == 'gpu' and torch.cuda.is_available():
    return 'cuda'
  return None


def _memory(compiled: Any) -> dict[str, Any] | None:
  try:
    ma = compiled.memory_analysis()
  except Exception:  # noqa: BLE001 - some backends do not implement it
    return None
  if ma is None:
    return None
  peak = (
    ma.argument_size_in_bytes
    + ma.output_size_in_bytes
    - ma.alias_size_in_bytes
    + ma.temp_size_in_bytes
  )
  return {
    'argument_bytes': int(ma.argument_size_in_bytes),
    'output_bytes': int(ma.output_size_in_bytes),
    'alias_bytes': int(ma.alias_size_in_bytes),
    'temp_bytes': int(ma.temp_size_in_bytes),
    'peak_bytes': int(peak),
  }


def _xla_bytes_accessed(compiled: Any) -> int | None:
  """Bytes the compiled program reads and writes, by XLA's own cost model."""
  try:
    ca = compiled.cost_analysis()
  except Exception:  # noqa: BLE001 - some backends do not implement it
    return None
  if isinstance(ca, list):
    ca = ca[0] if ca else None
  if not ca or 'bytes accessed' not in ca:
    return None
  return int(ca['bytes accessed'])


# Entry-computation instructions that launch no kernel of their own.
_NOT_KERNELS = frozenset(
  {'parameter', 'tuple', 'get-tuple-element', 'bitcast', 'constant', 'opt-barrier'}
)


def _kernel_count(compiled: Any) -> int | None:
  """Instructions of the optimized entry computation that run as kernels (fusions, copies...)."""
  try:
    text = compiled.as_text()
  except Exception:  # noqa: BLE001
    return None
  if not text or 'ENTRY' not in text:
    return None
  entry = text[text.index('ENTRY') :]
  entry = entry[entry.index('{') + 1 : entry.index('\n}')]
  count = 0
  for line in entry.splitlines():
    # "%name = f32[...]{0} fusion(%a, %b), kind=kLoop, ..." -> "fusion"
    rhs = line.split(' = ', 1)[1] if ' = ' in line else ''
    op = re.search(r'(?:^|\s)([a-z][\w\-]*)\(', rhs)
    if op and op.group(1) not in _NOT_KERNELS:
      count += 1
  return count


def _iters_for(seconds_per_step: float, target: float) -> int:
  return max(1, min(1000, int(target / max(seconds_per_step, 1e-7))))


class _Probe:
  """A jitted float32 stream kernel on a donated array, timed per call.

  ``'add'``: ``a + b`` (2 reads, 1 write); ``'copy'``: ``a + 1`` (1 read, 1 write).
  """

  def __init__(self, n_elements: int, kind: str = 'add'):
    if kind == 'add':
      self.fn = jax.jit(lambda a, b: a + b, donate_argnums=0)
      self.rest: tuple[jax.Array, ...] = (jnp.ones((n_elements,), jnp.float32),)
    else:
      self.fn = jax.jit(lambda a: a + 1.0, donate_argnums=0)
      self.rest = ()
    self.bytes = (len(self.rest) + 2) * 4 * n_elements
    self.a = self.fn(jnp.ones((n_elements,), jnp.float32), *self.rest).block_until_ready()

  def seconds(self) -> float:
    t0 = time.perf_counter()
    self.a = self.fn(self.a, *self.rest).block_until_ready()
    return time.perf_counter() - t0

  def gb_per_s(self, calls: int = 3) -> float:
    """The median over ``calls`` timed calls (one call is a few ms: noisy)."""
    return self.bytes / statistics.median(self.seconds() for _ in range(calls)) / 1e9


def bandwidth_probe(probe: _Probe, repeats: int) -> dict[str, Any]:
  """GB/s of ``probe`` (a jitted float32 ``a + b``), and of a copy (``a + 1``) beside it."""
  seconds = statistics.median(probe.seconds() for _ in range(repeats))
  n_elements = probe.a.size
  copy = _Probe(n_elements, 'copy')
  copy_gb_per_s = copy.bytes / statistics.median(copy.seconds() for _ in range(repeats)) / 1e9
  del copy
  return {
    'probe': 'jitted float32 a + b, a donated (2 reads + 1 write)',
    'elements': n_elements,
    'bytes': probe.bytes,
    'seconds': seconds,
    'gb_per_s': probe.bytes / seconds / 1e9,
    'copy_gb_per_s': copy_gb_per_s,
  }


_ORDERS = list(itertools.permutations(('ours', 'optax', 'control')))
# Quantized rows add ours with float32 state: a Williams square of four orders,
# in which every runner takes every position once and comes right after each
# other runner once (balanced when the samples are a multiple of 4).
_ORDERS_4 = [
  ('ours', 'optax', 'float32_state', 'control'),
  ('optax', 'control', 'ours', 'float32_state'),
  ('control', 'float32_state', 'optax', 'ours'),
  ('float32_state', 'ours', 'control', 'optax'),
]


def _spread(xs: list[float]) -> dict[str, float]:
  """Median and quartiles (the quartiles collapse to the median for one sample)."""
  if len(xs) < 2:
    return {'median': xs[0], 'p25': xs[0], 'p75': xs[0]}
  q = statistics.quantiles(xs, n=4, method='inclusive')
  return {'median': statistics.median(xs), 'p25': q[0], 'p75': q[2]}


def state_bytes(opt: Any, params: Any) -> int:
  """Bytes of ``opt``'s state for ``params``: sum of size * itemsize over ``jax.eval_shape(opt.init)``."""
  shapes = jax.eval_shape(opt.init, params)
  return int(sum(x.size * jnp.dtype(x.dtype).itemsize for x in jax.tree.leaves(shapes)))


def state_bytes_table(
  tree: str, quick: bool, one_leaf_elements: int | None
) -> list[dict[str, Any]]:
  """Float32 against 8- and 4-bit state bytes for one tree (plain and centered + momentum)."""
  shapes = _tree_shapes(tree, quick, one_leaf_elements)
  params = {k: jax.ShapeDtypeStruct(s, jnp.float32) for k, s in shapes.items()}
  rows = []
  settings_kw: tuple[tuple[str, dict[str, Any]], ...] = (
    ('plain', {}),
    ('centered_momentum', {'centered': True, 'momentum': MOMENTUM}),
  )
  for settings, kw in settings_kw:
    f32 = state_bytes(rmsprop(LR, **kw), params)
    q8 = state_bytes(rmsprop(LR, accumulator_dtype=quantized(8), **kw), params)
    q4 = state_bytes(rmsprop(LR, accumulator_dtype=quantized(4), **kw), params)
    rows.append(
      {
        'tree': tree,
        'settings': settings,
        'n_params': int(sum(np.prod(s) for s in shapes.values())),
        'float32': f32,
        'q8': q8,
        'q4': q4,
        'q8_over_float32': q8 / f32,
        'q4_over_float32': q4 / f32,
      }
    )
  return rows


def time_step(
  config: str,
  tree: str,
  quick: bool,
  repeats: int,
  target: float,
  torch: Any,
  probe: _Probe,
  one_leaf_elements: int | None = None,
) -> dict[str, Any]:
  ours_fn, optax_fn, torch_kwargs = CONFIGS[config]
  shapes = _tree_shapes(tree, quick, one_leaf_elements)
  params = _materialize(shapes, 0, 1.0)
  grads = _materialize(shapes, 1, 1e-2)
  ours = _JaxRunner(ours_fn(), params, grads)
  peer = _JaxRunner(optax_fn(), params, grads)
  # A/A control: a second, separately compiled optax.rmsprop timed in the same
  # rotation. Its ratio to the first shows how far two identical programs
  # drift apart on this machine, i.e. the noise band of ``ours / optax``.
  control = _JaxRunner(optax_fn(), params, grads)
  runners = {'ours': ours, 'optax': peer, 'control': control}
  orders: list[tuple[str, ...]] = list(_ORDERS)
  if config in QUANTIZED:
    # Ours with float32 state and the same settings, in the same rotation.
    runners['float32_state'] = _JaxRunner(CONFIGS[QUANTIZED[config][0]][0](), params, grads)
    orders = list(_ORDERS_4)
  n = _iters_for(
    min(r.run(1) for k, r in runners.items() if k != 'ours' or config not in QUANTIZED), target
  )
  iters = dict.fromkeys(runners, n)
  if config in QUANTIZED:
    # The quantized step can be many times slower (XLA:CPU): its own count
    # keeps each sample near ``target``. Ratios are per step, so this is fair.
    iters['ours'] = _iters_for(ours.run(1), target)
  times: dict[str, list[float]] = {k: [] for k in runners}
  bws = []
  for r in range(repeats):
    # Re-probe the bandwidth between samples: on a shared machine it drifts.
    bws.append(probe.gb_per_s())
    # Walk through all six orders so that every runner goes first, second and
    # third, and right before and after each of the others, equally often
    # (exactly so when ``repeats`` is a multiple of 6).
    for k in orders[r % len(orders)]:
      times[k].append(runners[k].run(iters[k]))
  ratios = [a / b for a, b in zip(times['ours'], times['optax'])]
  aa = [a / b for a, b in zip(times['control'], times['optax'])]
  param_bytes = _nbytes(params)
  # The step must read params, grads and state and write params and state.
  moved = 2 * param_bytes + _nbytes(grads) + 2 * ours.state_bytes
  min_resident = param_bytes + _nbytes(grads) + ours.state_bytes
  bw = statistics.median(bws)
  out: dict[str, Any] = {
    'config': config,
    'state': state_label(config),
    'tree': tree,
    'n_leaves': len(shapes),
    'n_params': int(sum(np.prod(s) for s in shapes.values())),
    'iters_per_sample': n,
    'samples': repeats,
    'seconds': {
      'ours': statistics.median(times['ours']),
      'optax': statistics.median(times['optax']),
    },
    'ratio_ours_over': {'optax': statistics.median(ratios)},
    'ratio_spread': {'optax': _spread(ratios)},
    'aa_control': _spread(aa),
    'state_bytes': {'ours': ours.state_bytes, 'optax': peer.state_bytes},
    'bytes_moved': moved,
    'probe_gb_per_s': bw,
    'floor_seconds': moved / (bw * 1e9),
    'xla_bytes_accessed': {'ours': ours.xla_bytes, 'optax': peer.xla_bytes},
    'kernels': {'ours': ours.kernels, 'optax': peer.kernels},
    'memory': {
      'params_grads_state_bytes': min_resident,
      'ours': ours.memory,
      'optax': peer.memory,
    },
  }
  if config in QUANTIZED:
    f32 = runners['float32_state']
    vs_f32 = [a / b for a, b in zip(times['ours'], times['float32_state'])]
    out['float32_config'] = QUANTIZED[config][0]
    out['iters_per_sample_ours'] = iters['ours']
    out['seconds']['float32_state'] = statistics.median(times['float32_state'])
    out['ratio_ours_over']['float32_state'] = statistics.median(vs_f32)
    out['ratio_spread']['float32_state'] = _spread(vs_f32)
    out['state_bytes']['float32_state'] = f32.state_bytes
    out['state_ratio_vs_float32'] = ours.state_bytes / f32.state_bytes
    out['xla_bytes_accessed']['float32_state'] = f32.xla_bytes
    out['kernels']['float32_state'] = f32.kernels
    out['memory']['float32_state'] = f32.memory
  out['floor_fraction'] = out['floor_seconds'] / out['seconds']['ours']
  if ours.xla_bytes:
    # The same, against the traffic of the program XLA actually compiled: on a
    # backend without multi-output fusion (XLA:CPU) every output array is its
    # own kernel, which rereads its inputs; this is the floor that program has.
    out['xla_traffic_fraction'] = ours.xla_bytes / (bw * 1e9) / out['seconds']['ours']
  for who, runner in runners.items():
    mem = out['memory'].get(who)
    if mem is not None:
      mem['peak_over_min'] = mem['peak_bytes'] / (param_bytes + _nbytes(grads) + runner.state_bytes)
  device = None if torch is None else torch_device(torch)
  if device is not None and torch_kwargs is not None:
    tr = _TorchRunner(torch, torch_kwargs, params, grads, device)
    t_torch, torch_ratios = [], []
    for r in range(max(2, repeats // 2)):
      if r % 2 == 0:
        t, a = tr.run(n), ours.run(n)
      else:
        a, t = ours.run(n), tr.run(n)
      t_torch.append(t)
      torch_ratios.append(a / t)
    out['seconds']['torch'] = statistics.median(t_torch)
    out['ratio_ours_over']['torch'] = statistics.median(torch_ratios)
    out['ratio_spread']['torch'] = _spread(torch_ratios)
    del tr
  del ours, peer, control, runners
  gc.collect()
  return out


def _median_seconds(fn: Any, *args: Any, calls: int) -> float:
  jax.block_until_ready(fn(*args))  # compile and warm up
  ts = []
  for _ in range(calls):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    ts.append(time.perf_counter() - t0)
  return statistics.median(ts)


def quantize_cost(n_elements: int, calls: int = 5) -> dict[str, Any]:
  """Where the 8-bit step's time goes on one flat leaf: its parts timed alone.

  Each part is its own jitted program on ``n_elements`` float32 values (block
  256, the unsigned map of ``nu``): the whole float32-state and 8-bit plain
  steps (donated), ``quantize`` (block absmax, normalize, code lookup), the
  code lookup alone (the bucket table ``quantize`` uses, and for comparison
  ``jnp.searchsorted`` over the 255 midpoints, unrolled and default ``'scan'``),
  ``dequantize``, and its two halves: the code-map gather and the per-element
  block scale (a broadcast over each block, as ``dequantize`` does it).
  """
  shapes: dict[str, tuple[int, ...]] = {'w': (n_elements,)}
  params = _materialize(shapes, 0, 1.0)
  grads = _materialize(shapes, 1, 1e-2)
  x = jnp.abs(grads['w'])
  normalized = x / jnp.max(x)
  # nu's map as quantized() stores it: no code for 0.
  q = _quantize.quantize(x, bits=8, block_size=256, signed=False, unsigned_zero=False)
  table = _quantize.code_map(8, False, unsigned_zero=False)
  midpoints = jnp.asarray((table[1:] + table[:-1]) / 2)
  n_blocks = q.scale.shape[-1]
  parts: dict[str, tuple[Any, tuple[Any, ...]]] = {
    'quantize': (
      jax.jit(
        lambda v: _quantize.quantize(v, bits=8, block_size=256, signed=False, unsigned_zero=False)
      ),
      (x,),
    ),
    'code_lookup': (
      jax.jit(lambda v: _quantize._nearest_codes(v, 8, False, unsigned_zero=False)),
      (normalized,),
    ),
    'code_lookup_scan_unrolled': (
      jax.jit(lambda v: jnp.searchsorted(midpoints, v, method='scan_unrolled').astype(jnp.uint8)),
      (normalized,),
    ),
    'code_lookup_scan': (
      jax.jit(lambda v: jnp.searchsorted(midpoints, v, method='scan').astype(jnp.uint8)),
      (normalized,),
    ),
    'dequantize': (jax.jit(lambda a: a.dequantize()), (q,)),
    'code_map_gather': (
      jax.jit(lambda c: jnp.asarray(table)[c.astype(jnp.int32)]),
      (q.codes,),
    ),
    'scale_broadcast': (
      jax.jit(lambda s: jnp.broadcast_to(s[:, None], (n_blocks, 256)).reshape(-1)),
      (q.scale,),
    ),
  }
  seconds: dict[str, float] = {}
  for name, opt in (
    ('float32_step', rmsprop(LR)),
    ('q8_step', rmsprop(LR, accumulator_dtype=quantized(8))),
  ):
    runner = _JaxRunner(opt, params, grads)
    seconds[name] = statistics.median(runner.run(1) for _ in range(calls))
    del runner
  for name, (fn, args) in parts.items():
    seconds[name] = _median_seconds(fn, *args, calls=calls)
  base = seconds['float32_step']
  gc.collect()
  return {
    'elements': n_elements,
    'seconds': seconds,
    'over_float32_step': {k: v / base for k, v in seconds.items()},
  }


def check_numerics(config: str, steps: int = 3) -> float:
  """Max relative difference between ours and optax after ``steps`` steps (small tree).

  Float32-state configs: elementwise, relative to the optax param. Quantized
  configs (one leaf of 8192 elements, so that it gets quantized state):
  ``max |p_ours - p_optax| / max |p_optax - p_0|`` per leaf, the error of the
  parameter change relative to its size; the stored moments are rounded, and
  a difference relative to params near zero would say nothing.
  """
  ours_fn, optax_fn, _ = CONFIGS[config]
  shapes = {'a': (64, 128), 'b': (7,)} if config in QUANTIZED else {'a': (5, 7), 'b': (7,)}
  params = _materialize(shapes, 0, 1.0)
  results = []
  for opt in (ours_fn(), optax_fn()):
    p, s = params, opt.init(params)
    # Quantized state op by op compiles every small op of the code lookup: jit.
    update = jax.jit(opt.update) if config in QUANTIZED else opt.update
    for i in range(steps):
      g = _materialize(shapes, 10 + i, 1.0)
      u, s = update(g, s, p)
      p = optax.apply_updates(p, u)
    results.append(p)
  leaves = zip(jax.tree.leaves(results[0]), jax.tree.leaves(results[1]), jax.tree.leaves(params))
  if config in QUANTIZED:
    diffs = [float(jnp.max(jnp.abs(x - y)) / jnp.max(jnp.abs(y - p0))) for x, y, p0 in leaves]
  else:
    diffs = [float(jnp.max(jnp.abs(x - y) / jnp.maximum(jnp.abs(y), 1e-6))) for x, y, _ in leaves]
  return max(diffs)


def _time_lowering(fn: Any, *args: Any) -> dict[str, float]:
  jax.clear_caches()
  t0 = time.perf_counter()
  traced = fn.trace(*args)
  t1 = time.perf_counter()
  lowered = traced.lower()
  t2 = time.perf_counter()
  lowered.compile()
  t3 = time.perf_counter()
  return {'trace': t1 - t0, 'lower': t2 - t1, 'compile': t3 - t2, 'total': t3 - t0}


def _compile_params(n_leaves: int) -> dict[str, jax.ShapeDtypeStruct]:
  return {f'w{i:05d}': jax.ShapeDtypeStruct(COMPILE_SHAPE, jnp.float32) for i in range(n_leaves)}


def time_compile(opt: Any, n_leaves: int) -> dict[str, float]:
  params = _compile_params(n_leaves)
  state = jax.eval_shape(opt.init, params)
  return _time_lowering(_step_fn(opt), params, state, params)


def time_compile_floor(opt: Any, n_leaves: int) -> dict[str, float]:
  """Compile time of the least program with the step's inputs and outputs.

  Every output array of the step (each param and each state leaf) is produced
  by one trivial kernel (``x + 1``). A step that keeps one state array per
  param leaf, as the design requires, cannot have fewer output arrays; without
  multi-output fusion (XLA:CPU) each is at least one kernel to compile.
  """
  params = _compile_params(n_leaves)
  state = jax.eval_shape(opt.init, params)

  def least(params: Any, state: Any, grads: Any) -> tuple[Any, Any]:
    del grads
    bump = lambda x: x + jnp.ones((), x.dtype)
    return jax.tree.map(bump, params), jax.tree.map(bump, state)

  return _time_lowering(jax.jit(least, donate_argnums=(0, 1)), params, state, params)


def compile_sweep(config: str, leaf_counts: list[int]) -> dict[str, Any]:
  ours_fn, optax_fn, _ = CONFIGS[config]
  rows = []
  for i, n in enumerate(leaf_counts):
    order = [('ours', ours_fn), ('optax', optax_fn)]
    if i % 2:
      order.reverse()
    row: dict[str, Any] = {'n_leaves': n}
    for who, fn in order:
      row[who] = time_compile(fn(), n)
    row['floor'] = time_compile_floor(ours_fn(), n)
    row['ratio_ours_over_optax'] = row['ours']['total'] / row['optax']['total']
    row['ratio_floor_over_optax'] = row['floor']['total'] / row['optax']['total']
    rows.append(row)
  slopes = {}
  if len(leaf_counts) > 1:
    for who in ('ours', 'optax', 'floor'):
      slope = np.polyfit(leaf_counts, [r[who]['total'] for r in rows], 1)[0]
      slopes[who] = float(slope)
  return {
    'config': config,
    'leaf_shape': list(COMPILE_SHAPE),
    'rows': rows,
    'seconds_per_leaf': slopes,
  }


def _cpu_model() -> str:
  try:
    out = subprocess.run(['lscpu'], capture_output=True, text=True, check=False).stdout
    for line in out.splitlines():
      if line.startswith('Model name:'):
        return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or 'unknown'


def _import_torch() -> Any:
  try:
    import torch  # noqa: PLC0415 - optional peer, imported only when benchmarking
  except ImportError:
    return None
  return torch


def _skip_quantized(
  config: str,
  tree: str,
  quick: bool,
  one_leaf_elements: int | None,
  quantized_trees: set[str] | None,
) -> str | None:
  """Why a quantized row is not timed, or None."""
  if quantized_trees is not None and tree not in quantized_trees:
    return '--quick times quantized state on ' + ', '.join(sorted(quantized_trees)) + ' only'
  shapes = _tree_shapes(tree, quick, one_leaf_elements)
  params = {k: jax.ShapeDtypeStruct(s, jnp.float32) for k, s in shapes.items()}
  ours = CONFIGS[config][0]()
  if state_bytes(ours, params) == state_bytes(CONFIGS[QUANTIZED[config][0]][0](), params):
    return 'no leaf is large enough to get quantized state'
  return None


def run(
  *,
  quick: bool = False,
  configs: list[str] | None = None,
  trees: list[str] | None = None,
  leaf_counts: list[int] | None = None,
  repeats: int | None = None,
  with_torch: bool = True,
  one_leaf_elements: int | None = None,
  log: Callable[[str], None] = lambda s: None,
) -> dict[str, Any]:
  """Runs the benchmark and returns the results as a JSON-ready dict."""
  # --quick (CI) times the quantized configs on the one-leaf tree only, unless
  # they are asked for: compiling four steps per row for every tree is slow.
  quantized_trees = None if configs is not None or not quick else {'one_leaf'}
  configs = list(CONFIGS) if configs is None else configs
  trees = list(TREES) if trees is None else trees
  if leaf_counts is None:
    leaf_counts = [10, 50] if quick else [10, 100, 500, 2000]
  repeats = (6 if quick else 12) if repeats is None else repeats
  target = 0.005 if quick else 0.25  # seconds per timed sample
  torch = _import_torch() if with_torch else None
  largest = max(
    sum(int(np.prod(s)) for s in _tree_shapes(t, quick, one_leaf_elements).values()) for t in trees
  )
  # One probe serves the headline figure and the re-probes between samples.
  probe = _Probe(largest)
  bw = bandwidth_probe(probe, repeats=max(5, repeats))
  log(
    f'bandwidth probe: {bw["gb_per_s"]:.1f} GB/s ({bw["probe"]}, {largest} elements); '
    f'copy {bw["copy_gb_per_s"]:.1f} GB/s'
  )
  steps = []
  skipped = []
  for tree in trees:
    for config in configs:
      if config in QUANTIZED:
        why = _skip_quantized(config, tree, quick, one_leaf_elements, quantized_trees)
        if why:
          skipped.append({'config': config, 'tree': tree, 'reason': why})
          log(f'{config:<20} {tree:<11} skipped: {why}')
          continue
      row = time_step(config, tree, quick, repeats, target, torch, probe, one_leaf_elements)
      row['max_rel_diff_vs_optax'] = check_numerics(config)
      steps.append(row)
      log(_format_step(row))
  quantized_state: dict[str, Any] = {
    'state_bytes': [r for t in trees for r in state_bytes_table(t, quick, one_leaf_elements)],
    'skipped': skipped,
  }
  if any(c in QUANTIZED for c in configs):
    n_cost = _tree_shapes('one_leaf', quick, one_leaf_elements)['w'][0]
    log(f'quantize cost on one leaf of {n_cost} elements ...')
    quantized_state['quantize_cost'] = quantize_cost(n_cost, calls=3 if quick else 5)
  log('compile sweep (centered_momentum) ...')
  sweep = compile_sweep('centered_momentum', leaf_counts)
  return {
    'meta': {
      'date': datetime.date.today().isoformat(),
      'cpu': _cpu_model(),
      'cores': _cores(),
      'backend': jax.default_backend(),
      'devices': [str(d) for d in jax.devices()],
      'python': platform.python_version(),
      'jax': jax.__version__,
      'optax': optax.__version__,
      'torch': None if torch is None else torch.__version__,
      'torch_device': None if torch is None else torch_device(torch),
      'quick': quick,
      'command': 'python -m rmsprop_optax bench ' + ' '.join(sys.argv[2:]),
      'ratio_definition': 'median over interleaved samples of t_ours / t_other (< 1: ours faster)',
    },
    'bandwidth': bw,
    'steps': steps,
    'summary': summarize(steps),
    'quantized_state': quantized_state,
    'compile': sweep,
  }


def _geomean(xs: list[float]) -> float:
  return float(np.exp(np.mean(np.log(xs))))


def summarize(steps: list[dict[str, Any]]) -> dict[str, Any]:
  """Ours/optax against the A/A control: is any difference bigger than noise?

  Over the float32-state rows (the same per-element work as optax); the
  quantized rows are summarized apart under ``'quantized'``.
  """
  quantized_rows = [r for r in steps if r.get('state', 'float32') != 'float32']
  steps = [r for r in steps if r.get('state', 'float32') == 'float32']
  out: dict[str, Any] = {}
  if quantized_rows:
    out['quantized'] = {
      'rows': len(quantized_rows),
      'geomean_over_float32_state': _geomean(
        [r['ratio_ours_over']['float32_state'] for r in quantized_rows]
      ),
      'geomean_over_optax': _geomean([r['ratio_ours_over']['optax'] for r in quantized_rows]),
      'range_state_ratio_vs_float32': [
        min(r['state_ratio_vs_float32'] for r in quantized_rows),
        max(r['state_ratio_vs_float32'] for r in quantized_rows),
      ],
    }
  if not steps:
    return {'rows': 0, **out}
  ours = [r['ratio_ours_over']['optax'] for r in steps]
  aa = [r['aa_control']['median'] for r in steps]
  return {
    **out,
    'rows': len(steps),
    'rows_ours_at_most_optax': sum(x <= 1.0 for x in ours),
    'geomean_ours_over_optax': _geomean(ours),
    'range_ours_over_optax': [min(ours), max(ours)],
    'geomean_aa_control': _geomean(aa),
    'range_aa_control': [min(aa), max(aa)],
  }


def _cores() -> int:
  import os  # noqa: PLC0415

  return len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else (os.cpu_count() or 0)


def _units(r: dict[str, Any], who: str) -> str:
  """XLA's traffic for ``who`` in units of one param array (e.g. 7.0 = 7N)."""
  xb = r['xla_bytes_accessed'][who]
  return 'n/a' if xb is None else f'{xb / (4 * r["n_params"]):.1f}N'


def _format_step(r: dict[str, Any]) -> str:
  s = r['seconds']
  sp = r['ratio_spread']['optax']
  aa = r['aa_control']
  torch_part = (
    f'  torch {1e3 * s["torch"]:7.2f} ms ({r["ratio_ours_over"]["torch"]:.2f})'
    if 'torch' in s
    else ''
  )
  mem = r['memory']['ours']
  mem_part = '' if mem is None else f'  mem {mem["peak_over_min"]:.3f}x'
  xla_part = (
    f' ({100 * r["xla_traffic_fraction"]:.0f}% of XLA traffic {_units(r, "ours")})'
    if 'xla_traffic_fraction' in r
    else ''
  )
  q_part = (
    f'  float32-state {1e3 * s["float32_state"]:7.2f} ms ({r["ratio_ours_over"]["float32_state"]:.2f})'
    f'  state {r["state_ratio_vs_float32"]:.3f}x'
    if 'float32_state' in s
    else ''
  )
  return (
    f'{r["config"]:<20} {r["tree"]:<11} ours {1e3 * s["ours"]:7.2f} ms  optax {1e3 * s["optax"]:7.2f} ms '
    f'{r["ratio_ours_over"]["optax"]:.2f} [{sp["p25"]:.2f}-{sp["p75"]:.2f}] '
    f'A/A {aa["median"]:.2f} [{aa["p25"]:.2f}-{aa["p75"]:.2f}]{torch_part}{q_part}'
    f'  floor {100 * r["floor_fraction"]:4.0f}%{xla_part}{mem_part}'
  )


# Printed under the quantized tables; the module docstring has the long form.
QUANTIZED_NOTE = (
  'why the quantized step is slower on XLA:CPU although it moves fewer bytes: it is not '
  'memory-bound. Each requantized moment needs a block absmax (a reduction, then a second pass '
  'to normalize) and a code lookup (a table indexed by the float bits, then a compare), and '
  'dequantizing needs a code-map gather and a per-element block scale; XLA:CPU runs these as '
  'separate loops over the whole array whose float32 intermediates go through memory (hence the '
  'larger XLA traffic, and a peak memory above the float32-state step), and gathers do not '
  'vectorize well. The "where the time goes" line times each part alone against the float32 step.'
)


def _mb(x: int) -> str:
  return f'{x / 2**20:.1f}'


def _format_quantized(results: dict[str, Any]) -> list[str]:
  qs = results.get('quantized_state', {})
  lines: list[str] = []
  if qs.get('state_bytes'):
    lines += [
      '',
      'state bytes (sum of size * itemsize over jax.eval_shape(opt.init, params)); '
      'leaves under 4096 elements keep float32 state',
      '',
      '| tree | settings | params | float32 state MB | 8-bit MB | 4-bit MB | 8-bit / float32 '
      '| 4-bit / float32 |',
      '|---|---|---:|---:|---:|---:|---:|---:|',
    ]
    for b in qs['state_bytes']:
      lines.append(
        f'| {b["tree"]} | {b["settings"]} | {b["n_params"]:,} | {_mb(b["float32"])} | {_mb(b["q8"])} '
        f'| {_mb(b["q4"])} | {b["q8_over_float32"]:.3f} | {b["q4_over_float32"]:.3f} |'
      )
  rows = [r for r in results['steps'] if r.get('state', 'float32') != 'float32']
  if rows:
    lines += [
      '',
      'quantized state: ours with accumulator_dtype=quantized(bits) against ours with float32 state '
      'and optax.rmsprop (same settings), all in one interleaved rotation with the A/A control',
      '',
      '| config | tree | state / float32 state | peak mem MB q / float32 / optax | q ms '
      '| float32-state ms | optax ms | q / float32-state [quartiles] | q / optax [quartiles] '
      '| A/A | XLA traffic q / float32 | XLA traffic reached | entry ops q / float32 |',
      '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ]
    for r in rows:
      s, m, k = r['seconds'], r['memory'], r['kernels']
      mems = [m.get(w) for w in ('ours', 'float32_state', 'optax')]
      mem = 'n/a' if None in mems else ' / '.join(_mb(x['peak_bytes']) for x in mems if x)
      sf, so, aa = r['ratio_spread']['float32_state'], r['ratio_spread']['optax'], r['aa_control']
      xt = f'{100 * r["xla_traffic_fraction"]:.0f}%' if 'xla_traffic_fraction' in r else 'n/a'
      lines.append(
        f'| {r["config"]} | {r["tree"]} | {r["state_ratio_vs_float32"]:.3f} | {mem} '
        f'| {1e3 * s["ours"]:.2f} | {1e3 * s["float32_state"]:.2f} | {1e3 * s["optax"]:.2f} '
        f'| {sf["median"]:.2f} [{sf["p25"]:.2f}, {sf["p75"]:.2f}] '
        f'| {so["median"]:.2f} [{so["p25"]:.2f}, {so["p75"]:.2f}] | {aa["median"]:.2f} '
        f'| {_units(r, "ours")} / {_units(r, "float32_state")} | {xt} '
        f'| {k["ours"]} / {k["float32_state"]} |'
      )
  cost = qs.get('quantize_cost')
  if cost:
    sec, rel = cost['seconds'], cost['over_float32_step']
    parts = ', '.join(
      f'{k} {1e3 * sec[k]:.2f} ms ({rel[k]:.1f}x)' for k in sec if k != 'float32_step'
    )
    lines += [
      '',
      f'where the time goes, one leaf of {cost["elements"]:,} elements, each part jitted alone '
      f'(x the float32 plain step, {1e3 * sec["float32_step"]:.2f} ms): {parts}',
    ]
  if rows or cost:
    lines += ['', QUANTIZED_NOTE]
  return lines


def format_table(results: dict[str, Any]) -> str:
  """The results as Markdown tables."""
  meta, bw = results['meta'], results['bandwidth']
  lines = [
    f'{meta["cpu"]}, {meta["cores"]} cores, {meta["backend"]}; '
    f'jax {meta["jax"]}, optax {meta["optax"]}, torch {meta["torch"]}; {meta["date"]}',
    f'bandwidth probe: {bw["gb_per_s"]:.2f} GB/s ({bw["probe"]}); '
    f'copy {bw["copy_gb_per_s"]:.2f} GB/s (a + 1, 1 read + 1 write)',
    'ratios: median [quartiles] of interleaved t_ours / t_other (< 1.00: ours faster); '
    'A/A: a second optax.rmsprop against the first, timed in the same rotation (the noise band)',
    'floor: bytes the step must move (N = one param array: plain 5N) over the probe bandwidth; '
    "XLA traffic: bytes the compiled step reads and writes by XLA's cost model",
    '',
    '| config | tree | leaves | params | ours ms | optax ms | ours/optax [quartiles] | A/A [quartiles] '
    '| torch ms | ours/torch | entry ops ours / optax | XLA traffic ours / optax | floor ms '
    '| floor reached | XLA traffic reached | peak mem ours / optax (x params+grads+state) |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ]
  for r in results['steps']:
    if r.get('state', 'float32') != 'float32':
      continue  # in the quantized table below
    s = r['seconds']
    t = f'{1e3 * s["torch"]:.2f}' if 'torch' in s else 'n/a'
    tr = f'{r["ratio_ours_over"]["torch"]:.2f}' if 'torch' in s else 'n/a'
    mo, mp = r['memory']['ours'], r['memory']['optax']
    mem = (
      'n/a'
      if mo is None or mp is None
      else f'{mo["peak_over_min"]:.3f} / {mp["peak_over_min"]:.3f}'
    )
    sp, aa = r['ratio_spread']['optax'], r['aa_control']
    k = r['kernels']
    xt = f'{100 * r["xla_traffic_fraction"]:.0f}%' if 'xla_traffic_fraction' in r else 'n/a'
    lines.append(
      f'| {r["config"]} | {r["tree"]} | {r["n_leaves"]} | {r["n_params"]:,} | {1e3 * s["ours"]:.2f} '
      f'| {1e3 * s["optax"]:.2f} | {r["ratio_ours_over"]["optax"]:.2f} [{sp["p25"]:.2f}, {sp["p75"]:.2f}] '
      f'| {aa["median"]:.2f} [{aa["p25"]:.2f}, {aa["p75"]:.2f}] | {t} | {tr} '
      f'| {k["ours"]} / {k["optax"]} | {_units(r, "ours")} / {_units(r, "optax")} '
      f'| {1e3 * r["floor_seconds"]:.2f} | {100 * r["floor_fraction"]:.0f}% | {xt} | {mem} |'
    )
  sm = results['summary']
  if sm['rows']:
    lines += [
      '',
      f'ours/optax over {sm["rows"]} rows: geometric mean {sm["geomean_ours_over_optax"]:.3f} '
      f'(medians {sm["range_ours_over_optax"][0]:.2f} to {sm["range_ours_over_optax"][1]:.2f}, '
      f'{sm["rows_ours_at_most_optax"]} of {sm["rows"]} <= 1.00); '
      f'A/A control: geometric mean {sm["geomean_aa_control"]:.3f} '
      f'(medians {sm["range_aa_control"][0]:.2f} to {sm["range_aa_control"][1]:.2f})',
    ]
  lines += _format_quantized(results)
  c = results['compile']
  lines += [
    '',
    f'compile time, {c["config"]}, leaves of {tuple(c["leaf_shape"])} float32 (seconds: trace + lower + XLA); '
    'least: one trivial kernel per output array of the step (params and state); '
    'on XLA:CPU about the least any per-leaf-state step can compile to',
    '',
    '| leaves | ours trace | ours lower | ours XLA | ours total | optax trace | optax lower '
    '| optax XLA | optax total | least total | ours/optax | least/optax |',
    '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ]
  for row in c['rows']:
    o, p, f = row['ours'], row['optax'], row['floor']
    lines.append(
      f'| {row["n_leaves"]} | {o["trace"]:.2f} | {o["lower"]:.2f} | {o["compile"]:.2f} | {o["total"]:.2f} '
      f'| {p["trace"]:.2f} | {p["lower"]:.2f} | {p["compile"]:.2f} | {p["total"]:.2f} '
      f'| {f["total"]:.2f} | {row["ratio_ours_over_optax"]:.2f} | {row["ratio_floor_over_optax"]:.2f} |'
    )
  if c['seconds_per_leaf']:
    sl = c['seconds_per_leaf']
    lines.append('')
    lines.append(
      f'growth per added leaf: ours {1e3 * sl["ours"]:.2f} ms, optax {1e3 * sl["optax"]:.2f} ms, '
      f'least {1e3 * sl["floor"]:.2f} ms'
    )
  return '\n'.join(lines)


def main(argv: list[str]) -> int:
  # The module docstring (what is measured, how to read it) is the help's epilog.
  doc = (__doc__ or '').replace('``', '')
  parser = argparse.ArgumentParser(
    prog='python -m rmsprop_optax bench',
    description=doc.splitlines()[0],
    epilog='\n'.join(doc.splitlines()[2:]),
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  parser.add_argument('--quick', action='store_true', help='small sizes and few repeats (CI)')
  parser.add_argument('--json', metavar='PATH', help='write the results as JSON to PATH')
  parser.add_argument(
    '--configs', nargs='+', choices=list(CONFIGS), help='subset of configurations'
  )
  parser.add_argument('--trees', nargs='+', choices=list(TREES), help='subset of trees')
  parser.add_argument('--leaf-counts', nargs='+', type=int, help='leaf counts of the compile sweep')
  parser.add_argument(
    '--repeats',
    type=int,
    help='interleaved samples per measurement (a multiple of 6 balances the order)',
  )
  parser.add_argument('--no-torch', action='store_true', help='skip torch.optim.RMSprop')
  parser.add_argument(
    '--one-leaf-elements',
    type=int,
    metavar='N',
    help='size of the one-leaf tree (e.g. 1000000000 on a GPU)',
  )
  args = parser.parse_args(argv)
  if args.one_leaf_elements is not None and args.one_leaf_elements < 1:
    parser.error(f'--one-leaf-elements must be >= 1, got {args.one_leaf_elements}')
  if args.repeats is not None and args.repeats < 1:
    parser.error(f'--repeats must be >= 1, got {args.repeats}')
  results = run(
    quick=args.quick,
    configs=args.configs,
    trees=args.trees,
    leaf_counts=args.leaf_counts,
    repeats=args.repeats,
    with_torch=not args.no_torch,
    one_leaf_elements=args.one_leaf_elements,
    log=lambda s: print(s, file=sys.stderr, flush=True),
  )
  results['meta']['command'] = 'python -m rmsprop_optax bench ' + ' '.join(argv)
  print(format_table(results))
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(results, f, indent=1)
  return 0
