"""The multi-host demo's model on one global mesh, the same on any topology.

A small MLP trained data parallel on a ``('data', 'model')`` mesh: the mesh
(devices ordered by process), where each parameter lives (fully sharded,
``'fsdp'``, or data x model, ``'dm'``), the rows of each step's batch that each
process feeds, the optimizer (centered RMSprop with momentum, float32 or 8-bit
state), its jitted step, and the checkpoint restore target with shardings.
:mod:`rmsprop_optax.demos.multihost` trains it and checkpoints it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import rmsprop_optax
from rmsprop_optax.demos import data_parallel

AXES = ('data', 'model')
# Input and output widths of the MLP, its hidden width and the global batch.
SIZES = (32, 1024, 16)
GLOBAL_BATCH = 256
LEARNING_RATE = 1e-4

Params = dict[str, jax.Array]


def initialize(coordinator: str, num_processes: int, process_id: int) -> None:
  """``jax.distributed.initialize`` (a no-op for one process)."""
  if num_processes > 1:
    jax.distributed.initialize(
      coordinator_address=coordinator, num_processes=num_processes, process_id=process_id
    )


def make_mesh(shape: tuple[int, int] | None = None, devices: Sequence[Any] | None = None) -> Mesh:
  """A ``('data', 'model')`` mesh over ``devices`` (default: every device of every process).

  Devices are ordered by process, so with the default shape ``(processes,
  devices per process)`` each row of the mesh is one process: the ``'data'``
  axis crosses hosts and the ``'model'`` axis stays inside one. A smaller
  shape takes the first devices in that order, which only makes sense in one
  process: every process must have devices in the mesh.
  """
  devices = sorted(
    jax.devices() if devices is None else devices, key=lambda d: (d.process_index, d.id)
  )
  if shape is None:
    shape = (jax.process_count(), jax.local_device_count())
  if shape[0] < 1 or shape[1] < 1 or shape[0] * shape[1] > len(devices):
    raise ValueError(f'mesh shape {shape} does not fit the {len(devices)} devices')
  chosen = devices[: shape[0] * shape[1]]
  missing = set(range(jax.process_count())) - {d.process_index for d in chosen}
  if missing:
    raise ValueError(
      f'mesh shape {shape} leaves processes {sorted(missing)} without a device; every process '
      'of a job must take part in the mesh'
    )
  return Mesh(np.array(chosen).reshape(shape), AXES)


LAYOUTS = ('fsdp', 'dm')


def param_specs(layout: str = 'fsdp') -> dict[str, P]:
  """Where each parameter lives.

  ``'fsdp'`` (fully sharded): the hidden layer is split over every device of
  the mesh, ``('data', 'model')`` together, so each process holds
  ``1 / processes`` of the params and of the optimizer state. ``'dm'``
  (data x model, Megatron-style): split over ``'model'`` only, a full copy on
  each ``'data'`` row.
  """
  if layout == 'fsdp':
    return {'w0': P(None, AXES), 'b0': P(AXES), 'w1': P(AXES, None), 'b1': P()}
  if layout == 'dm':
    return {'w0': P(None, 'model'), 'b0': P('model'), 'w1': P('model', None), 'b1': P()}
  raise ValueError(f'param_specs: `layout` must be one of {LAYOUTS}, got {layout!r}')


def host_params(seed: int = 0) -> dict[str, np.ndarray]:
  """The initial parameters as host arrays (every process computes the same)."""
  rng = np.random.default_rng([seed, 0])
  d_in, hidden, d_out = SIZES
  return {
    'w0': (rng.standard_normal((d_in, hidden)) / np.sqrt(d_in)).astype(np.float32),
    'b0': np.zeros(hidden, np.float32),
    'w1': (rng.standard_normal((hidden, d_out)) / np.sqrt(hidden)).astype(np.float32),
    'b1': np.zeros(d_out, np.float32),
  }


def host_batch(step: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """The global batch of ``step``: a pure function of the step (data order survives restarts)."""
  d_in, _, d_out = SIZES
  teacher = np.random.default_rng([seed, 1]).standard_normal((d_in, d_out)) / np.sqrt(d_in)
  rng = np.random.default_rng([seed, 2, step])
  x = rng.standard_normal((GLOBAL_BATCH, d_in))
  y = np.sin(2 * x @ teacher) + 0.1 * x[:, :d_out] ** 2
  return x.astype(np.float32), y.astype(np.float32)


def place_params(host: dict[str, np.ndarray], mesh: Mesh, layout: str = 'fsdp') -> Params:
  """Global arrays: each process fills only the shards on its own devices."""
  specs = param_specs(layout)

  def shard_of(value: np.ndarray) -> Callable[[Any], np.ndarray]:
    return lambda index: value[index]

  return {
    k: jax.make_array_from_callback(v.shape, NamedSharding(mesh, specs[k]), shard_of(v))
    for k, v in host.items()
  }


def local_rows(mesh: Mesh, batch: int = GLOBAL_BATCH) -> slice:
  """The rows of the global batch this process feeds (its devices' ``'data'`` shards)."""
  index = NamedSharding(mesh, P('data')).addressable_devices_indices_map((batch,))
  rows = [s[0] for s in index.values() if s is not None]
  spans = sorted({(r.start or 0, batch if r.stop is None else r.stop) for r in rows})
  if not spans or any(later[0] != earlier[1] for earlier, later in zip(spans, spans[1:])):
    raise ValueError(f'process {jax.process_index()} does not own contiguous rows of the batch')
  return slice(spans[0][0], spans[-1][1])


def place_batch(step: int, mesh: Mesh, seed: int = 0) -> tuple[jax.Array, jax.Array]:
  """This process's rows of the step's batch, assembled into one global array per input."""
  rows = local_rows(mesh)
  sharding = NamedSharding(mesh, P('data', None))
  x, y = host_batch(step, seed)
  return (
    jax.make_array_from_process_local_data(sharding, x[rows], x.shape),
    jax.make_array_from_process_local_data(sharding, y[rows], y.shape),
  )


def make_optimizer(state: str = 'float32') -> optax.GradientTransformation:
  """Centered RMSprop with momentum; ``state='8bit'`` stores its three buffers as 8-bit codes."""
  if state not in ('float32', '8bit'):
    raise ValueError(f"make_optimizer: `state` must be 'float32' or '8bit', got {state!r}")
  # Blocks of 128 along the last axis. Fixed, not derived from the device
  # count, so a checkpoint has the same shapes on every topology. On up to 8
  # devices no block spans two shards of w0 (1024 columns) and the scales
  # shard like the params; on more, a block spans shards and its scale is
  # placed as the compiler decides.
  spec = rmsprop_optax.quantized(8, block_size=128) if state == '8bit' else None
  return rmsprop_optax.rmsprop(
    LEARNING_RATE, decay=0.95, momentum=0.9, centered=True, accumulator_dtype=spec
  )


def state_target(opt: optax.GradientTransformation, abstract_params: Any) -> Any:
  """What a checkpoint restores into: ``jax.eval_shape(opt.init, params)`` with shardings.

  The shardings are the ones ``jax.jit(opt.init)`` gives on the params' mesh
  (state sharded like the params), read from the compiled program without
  allocating anything.
  """
  shapes = jax.eval_shape(opt.init, abstract_params)
  shardings = jax.jit(opt.init).lower(abstract_params).compile().output_shardings
  return jax.tree.map(
    lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), shapes, shardings
  )


def abstract_params(mesh: Mesh, layout: str = 'fsdp') -> dict[str, jax.ShapeDtypeStruct]:
  """The params as shapes, dtypes and shardings on ``mesh`` (nothing allocated)."""
  specs = param_specs(layout)
  return {
    k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=NamedSharding(mesh, specs[k]))
    for k, v in host_params().items()
  }


def make_step(opt: optax.GradientTransformation) -> Callable[..., Any]:
  """One data-parallel step; the compiler all-reduces the gradients over ``'data'``."""
  step = data_parallel.jit_step(opt)
  if jax.default_backend() != 'cpu' or jax.process_count() == 1:
    return step

  def step_and_wait(params: Params, state: Any, x: jax.Array, y: jax.Array) -> Any:
    # Several processes on XLA:CPU (jax 0.10.2, gloo) with several devices
    # each: when one step's cross-process collectives overlapped the next
    # step's, the processes hung here (3 of 3 runs within 200 steps; 0 of 3
    # runs of 300 steps once each step was waited for). Not measured on
    # GPUs or TPUs, where the step does not wait.
    return jax.block_until_ready(step(params, state, x, y))

  return step_and_wait


def local_bytes(tree: Any) -> tuple[int, int]:
  """(bytes of distinct shards on this process, bytes of the global arrays) over ``tree``.

  A shard replicated on several of this process's devices counts once.
  """
  here = total = 0
  for leaf in jax.tree.leaves(tree):
    total += leaf.size * leaf.dtype.itemsize
    distinct = {repr(s.index): s.data for s in leaf.addressable_shards}
    here += sum(d.size * d.dtype.itemsize for d in distinct.values())
  return here, total
