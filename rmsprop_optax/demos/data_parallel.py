"""Data-parallel training with RMSprop, using JAX's own machinery only.

The global batch is split over a 1-D device mesh (axis ``'data'``); params and
optimizer state are replicated. Two equivalent ways to write the step:

- ``jax.shard_map``: each device computes the gradient of its shard's mean
  loss and ``jax.lax.pmean`` averages the gradients over ``'data'`` (with equal
  shards, the mean of the shard means is the global mean); the optimizer then
  updates the replicated params.
- ``jax.jit`` on a batch placed with ``NamedSharding(mesh, P('data'))``: the
  compiler partitions the loss and inserts the same all-reduce itself.

Both are compared with the same training on one device. Run it on 8 virtual
CPU devices with::

  XLA_FLAGS=--xla_force_host_platform_device_count=8 python -m rmsprop_optax.demos.data_parallel

(on one device it still runs, with a mesh of one).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from rmsprop_optax import presets

NAME = 'data_parallel'
PER_DEVICE_BATCH = 32
STEPS_FAST = 60
STEPS_FULL = 400
# Data-parallel vs one-device loss curves: the batch sum runs in another
# order, so only the last bits of the gradients differ.
MATCH_RTOL = 1e-4

Params = dict[str, jax.Array]


def make_optimizer() -> optax.GradientTransformation:
  """Keras-style RMSprop with momentum (any rmsprop_optax optimizer works)."""
  return presets.keras(learning_rate=3e-3, momentum=0.9)


def init_params(key: jax.Array, sizes: tuple[int, ...] = (16, 64, 4)) -> Params:
  keys = jax.random.split(key, len(sizes) - 1)
  params = {}
  for i, (k, m, n) in enumerate(zip(keys, sizes[:-1], sizes[1:])):
    params[f'w{i}'] = jax.random.normal(k, (m, n)) / np.sqrt(m)
    params[f'b{i}'] = jnp.zeros(n)
  return params


def loss_fn(params: Params, x: jax.Array, y: jax.Array) -> jax.Array:
  """Mean squared error of a tanh MLP."""
  h = x
  n = len(params) // 2
  for i in range(n):
    h = h @ params[f'w{i}'] + params[f'b{i}']
    if i < n - 1:
      h = jnp.tanh(h)
  return jnp.mean((h - y) ** 2)


def make_data(key: jax.Array, num: int) -> tuple[jax.Array, jax.Array]:
  """A smooth teacher function of 16 inputs with 4 outputs, plus noise."""
  kx, kw, kn = jax.random.split(key, 3)
  x = jax.random.normal(kx, (num, 16))
  w = jax.random.normal(kw, (16, 4)) / 4
  y = jnp.sin(x @ w) + 0.5 * jnp.cos(x[:, :4]) + 0.01 * jax.random.normal(kn, (num, 4))
  return x, y


def shard_map_step(opt: optax.GradientTransformation, mesh: Mesh) -> Callable[..., Any]:
  """One step with per-device gradients averaged by ``lax.pmean`` in ``shard_map``."""

  def local_grads(params: Params, x: jax.Array, y: jax.Array) -> tuple[jax.Array, Params]:
    # The params enter replicated (invariant over 'data'). Differentiating
    # them directly would make JAX sum the per-device cotangents (the
    # transpose of the implicit broadcast is a psum): a gradient 8 times too
    # large on 8 devices, which RMSprop's scale invariance almost hides.
    # Mark them per-device first, so each device gets its own shard's
    # gradient, then average explicitly.
    local = jax.lax.pcast(params, 'data', to='varying')
    loss, grads = jax.value_and_grad(loss_fn)(local, x, y)
    return jax.lax.pmean((loss, grads), 'data')

  grads_fn = jax.shard_map(
    local_grads, mesh=mesh, in_specs=(P(), P('data'), P('data')), out_specs=(P(), P())
  )

  @jax.jit
  def step(params: Params, state: Any, x: jax.Array, y: jax.Array) -> tuple[Params, Any, Any]:
    loss, grads = grads_fn(params, x, y)
    updates, state = opt.update(grads, state, params)
    return optax.apply_updates(params, updates), state, loss

  return step


def jit_step(opt: optax.GradientTransformation) -> Callable[..., Any]:
  """One step ``(params, state, x, y) -> (params, state, loss)`` of :func:`loss_fn`.

  On a sharded batch ``jax.jit`` partitions the step and all-reduces the gradients.
  """

  @jax.jit
  def step(params: Params, state: Any, x: jax.Array, y: jax.Array) -> tuple[Params, Any, Any]:
    loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
    updates, state = opt.update(grads, state, params)
    return optax.apply_updates(params, updates), state, loss

  return step


def train(
  opt: optax.GradientTransformation,
  step: Callable[..., Any],
  params: Params,
  batches: tuple[jax.Array, jax.Array],
  put: Callable[[Any], Any],
) -> tuple[Params, list[float]]:
  """Runs ``step`` over the batches; ``put`` places the params and each batch."""
  params = put(params)
  state = opt.init(params)
  losses = []
  xs, ys = batches
  for i in range(xs.shape[0]):
    params, state, loss = step(params, state, *put((xs[i], ys[i])))
    losses.append(float(loss))
  return params, losses


def _rel_diff(a: Any, b: Any) -> float:
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def run(*, fast: bool = False, seed: int = 0, progress: bool = False) -> dict[str, Any]:
  """Trains the MLP data-parallel (shard_map and jit) and on one device."""
  del progress  # a few hundred fast steps
  steps = STEPS_FAST if fast else STEPS_FULL
  devices = jax.devices()
  mesh = Mesh(np.array(devices), ('data',))
  batch = PER_DEVICE_BATCH * len(devices)
  k_params, k_data = jax.random.split(jax.random.key(seed))
  x, y = make_data(k_data, steps * batch)
  batches = (x.reshape(steps, batch, -1), y.reshape(steps, batch, -1))
  params = init_params(k_params)
  opt = make_optimizer()

  replicated = NamedSharding(mesh, P())
  split = NamedSharding(mesh, P('data'))

  def put_dp(tree: Any) -> Any:
    if isinstance(tree, dict):  # params: replicated on every device
      return jax.device_put(tree, replicated)
    return jax.device_put(tree, split)  # a batch: split along its first axis

  def put_one(tree: Any) -> Any:
    return jax.device_put(tree, devices[0])

  runs = {
    'shard_map': train(opt, shard_map_step(opt, mesh), params, batches, put_dp),
    'jit': train(opt, jit_step(opt), params, batches, put_dp),
    'one device': train(opt, jit_step(opt), params, batches, put_one),
  }
  ref_params, ref_losses = runs['one device']
  metrics: dict[str, dict[str, float]] = {}
  for name, (p, losses) in runs.items():
    metrics[name] = {
      'devices': len(devices) if name != 'one device' else 1,
      'global_batch': batch,
      'initial_loss': losses[0],
      'final_loss': losses[-1],
      'max_rel_diff_vs_one_device': _rel_diff(losses, ref_losses),
      'param_max_rel_diff_vs_one_device': max(
        _rel_diff(a, b) for a, b in zip(jax.tree.leaves(p), jax.tree.leaves(ref_params))
      ),
    }
  return {
    'name': NAME,
    'metrics': metrics,
    'curves': {name: losses for name, (_, losses) in runs.items()},
    'curve_label': 'training loss (MSE)',
  }


def main(argv: list[str] | None = None) -> int:
  """Prints the metrics; ``--fast`` for a short run."""
  argv = sys.argv[1:] if argv is None else argv
  result = run(fast='--fast' in argv)
  for name, m in result['metrics'].items():
    print(f'{name:>10}: ' + ', '.join(f'{k}={v:.6g}' for k, v in m.items()))
  return 0


if __name__ == '__main__':
  sys.exit(main())
