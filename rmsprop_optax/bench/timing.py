"""Step time: ours, optax and the A/A control interleaved, torch beside them.

:func:`time_step` times one configuration on one tree: each sample takes the
next order of the runners (every runner first, second and third equally
often), so machine drift cancels in the per-sample ratios.
"""

from __future__ import annotations

import gc
import itertools
import statistics
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rmsprop_optax.bench.bandwidth import Probe
from rmsprop_optax.bench.configs import (
  CONFIGS,
  LR,
  QUANTIZED,
  materialize,
  nbytes,
  state_label,
  tree_shapes,
)
from rmsprop_optax.bench.xla_cost import kernel_count, memory_analysis, xla_bytes_accessed


def step_fn(opt: optax.GradientTransformation) -> Any:
  def step(params: Any, state: Any, grads: Any) -> tuple[Any, Any]:
    updates, state = opt.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  return jax.jit(step, donate_argnums=(0, 1))


class JaxRunner:
  """A donated jitted step and the buffers it threads through."""

  def __init__(self, opt: Any, params: dict[str, jax.Array], grads: dict[str, jax.Array]):
    self.step: Any = step_fn(opt)
    self.params = jax.tree.map(jnp.copy, params)
    self.state = opt.init(self.params)
    self.grads = grads
    self.state_bytes = nbytes(self.state)
    # Run the AOT-compiled step itself: calling the jit would compile it again.
    compiled = self.step.lower(self.params, self.state, grads).compile()
    self.memory = memory_analysis(compiled)
    self.xla_bytes = xla_bytes_accessed(compiled)
    self.kernels = kernel_count(compiled)
    self.step = compiled
    self.run(1)  # warm up

  def run(self, n: int) -> float:
    jax.block_until_ready((self.params, self.state))
    t0 = time.perf_counter()
    for _ in range(n):
      self.params, self.state = self.step(self.params, self.state, self.grads)
    jax.block_until_ready((self.params, self.state))
    return (time.perf_counter() - t0) / n


class TorchRunner:
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


def iters_for(seconds_per_step: float, target: float) -> int:
  return max(1, min(1000, int(target / max(seconds_per_step, 1e-7))))


ORDERS = list(itertools.permutations(('ours', 'optax', 'control')))


# Quantized rows add ours with float32 state: a Williams square of four orders,
# in which every runner takes every position once and comes right after each
# other runner once (balanced when the samples are a multiple of 4).
ORDERS_4 = [
  ('ours', 'optax', 'float32_state', 'control'),
  ('optax', 'control', 'ours', 'float32_state'),
  ('control', 'float32_state', 'optax', 'ours'),
  ('float32_state', 'ours', 'control', 'optax'),
]


def spread(xs: list[float]) -> dict[str, float]:
  """Median and quartiles (the quartiles collapse to the median for one sample)."""
  if len(xs) < 2:
    return {'median': xs[0], 'p25': xs[0], 'p75': xs[0]}
  q = statistics.quantiles(xs, n=4, method='inclusive')
  return {'median': statistics.median(xs), 'p25': q[0], 'p75': q[2]}


def time_step(
  config: str,
  tree: str,
  quick: bool,
  repeats: int,
  target: float,
  torch: Any,
  probe: Probe,
  one_leaf_elements: int | None = None,
) -> dict[str, Any]:
  ours_fn, optax_fn, torch_kwargs = CONFIGS[config]
  shapes = tree_shapes(tree, quick, one_leaf_elements)
  params = materialize(shapes, 0, 1.0)
  grads = materialize(shapes, 1, 1e-2)
  ours = JaxRunner(ours_fn(), params, grads)
  peer = JaxRunner(optax_fn(), params, grads)
  # A/A control: a second, separately compiled optax.rmsprop timed in the same
  # rotation. Its ratio to the first shows how far two identical programs
  # drift apart on this machine, i.e. the noise band of ``ours / optax``.
  control = JaxRunner(optax_fn(), params, grads)
  runners = {'ours': ours, 'optax': peer, 'control': control}
  orders: list[tuple[str, ...]] = list(ORDERS)
  if config in QUANTIZED:
    # Ours with float32 state and the same settings, in the same rotation.
    runners['float32_state'] = JaxRunner(CONFIGS[QUANTIZED[config][0]][0](), params, grads)
    orders = list(ORDERS_4)
  n = iters_for(
    min(r.run(1) for k, r in runners.items() if k != 'ours' or config not in QUANTIZED), target
  )
  iters = dict.fromkeys(runners, n)
  if config in QUANTIZED:
    # The quantized step can be many times slower (XLA:CPU): its own count
    # keeps each sample near ``target``. Ratios are per step, so this is fair.
    iters['ours'] = iters_for(ours.run(1), target)
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
  param_bytes = nbytes(params)
  # The step must read params, grads and state and write params and state.
  moved = 2 * param_bytes + nbytes(grads) + 2 * ours.state_bytes
  min_resident = param_bytes + nbytes(grads) + ours.state_bytes
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
    'ratio_spread': {'optax': spread(ratios)},
    'aa_control': spread(aa),
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
    out['ratio_spread']['float32_state'] = spread(vs_f32)
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
      mem['peak_over_min'] = mem['peak_bytes'] / (param_bytes + nbytes(grads) + runner.state_bytes)
  device = None if torch is None else torch_device(torch)
  if device is not None and torch_kwargs is not None:
    tr = TorchRunner(torch, torch_kwargs, params, grads, device)
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
    out['ratio_spread']['torch'] = spread(torch_ratios)
    del tr
  del ours, peer, control, runners
  gc.collect()
  return out


def median_seconds(fn: Any, *args: Any, calls: int) -> float:
  jax.block_until_ready(fn(*args))  # compile and warm up
  ts = []
  for _ in range(calls):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    ts.append(time.perf_counter() - t0)
  return statistics.median(ts)
