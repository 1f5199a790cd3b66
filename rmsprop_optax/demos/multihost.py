"""Multi-host training: data parallel over processes, RMSprop state sharded like the params.

JAX's own multi-controller runtime: one Python process per host, each calling
``jax.distributed.initialize`` and then the same program on global arrays over
one global mesh; orbax-checkpoint saves and restores those arrays, also on
another number of processes, devices or mesh shape. Nothing here is
home-made distribution.

On this machine (the launcher, :mod:`rmsprop_optax.demos.localhost_cluster`,
starts the processes itself on localhost, each with several virtual CPU
devices; CPU collectives go over gloo)::

  python -m rmsprop_optax.demos.multihost --processes 2

On real hosts, start the same command once per host, with the first host's
address as coordinator and a checkpoint folder every host can reach (a network
file system or a bucket orbax understands)::

  # host 0                                        # host 1
  python -m rmsprop_optax.demos.multihost \\        python -m rmsprop_optax.demos.multihost \\
    --coordinator host0:1234 \\                       --coordinator host0:1234 \\
    --num-processes 2 --process-id 0 \\               --num-processes 2 --process-id 1 \\
    --checkpoint-dir /shared/ckpt                    --checkpoint-dir /shared/ckpt

The mesh is ``('data', 'model')``: ``'data'`` runs over processes (each
process feeds its own rows of the global batch, with
``jax.make_array_from_process_local_data``) and ``'model'`` over each
process's devices. The hidden layer is split over every device of the mesh,
both axes together (fully sharded, ``param_specs('fsdp')``; the tests also
check the data x model layout, ``'dm'``). ``jax.jit(opt.init)`` puts every
optimizer-state buffer where its parameter is, so each process holds only its
share of the params and of the state. Training
checkpoints asynchronously every ``--save-every`` steps and, when started
again with the same ``--checkpoint-dir``, resumes from the latest complete
checkpoint (on any process count: the restore target is
``jax.eval_shape(opt.init, params)`` with the current mesh's shardings).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import rmsprop_optax
from rmsprop_optax.demos import data_parallel
from rmsprop_optax.demos.localhost_cluster import gloo_notice, launch

NAME = 'multihost'
AXES = ('data', 'model')
# Input and output widths of the MLP, its hidden width and the global batch.
SIZES = (32, 1024, 16)
GLOBAL_BATCH = 256
LEARNING_RATE = 1e-4

Params = dict[str, jax.Array]


# --- the training problem, the same on any topology -------------------------


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


def checkpoint_manager(directory: str, save_every: int) -> Any:
  """Asynchronous orbax checkpoints every ``save_every`` steps, the last two kept.

  Orbax's interval policy also saves the first step it is given (step 1 here).
  """
  import orbax.checkpoint as ocp  # an optional dependency (the examples extra)

  return ocp.CheckpointManager(
    os.path.abspath(directory),
    options=ocp.CheckpointManagerOptions(
      max_to_keep=2, save_interval_steps=save_every, enable_async_checkpointing=True
    ),
  )


def train(
  *,
  steps: int,
  checkpoint_dir: str,
  save_every: int,
  state: str = 'float32',
  log_every: int = 50,
  print_fn: Callable[[str], None] = print,
) -> dict[str, Any]:
  """Trains to ``steps``, resuming from the latest checkpoint in ``checkpoint_dir``.

  The last step is always checkpointed. Returns the last loss (NaN when the
  checkpoint was already at ``steps``) and the step it started from.
  """
  import orbax.checkpoint as ocp

  mesh = make_mesh()
  opt = make_optimizer(state)
  target = {'params': abstract_params(mesh)}
  target['opt_state'] = state_target(opt, target['params'])
  manager = checkpoint_manager(checkpoint_dir, save_every)
  start = manager.latest_step()
  me = f'process {jax.process_index()}/{jax.process_count()}'
  if start is None:
    params = place_params(host_params(), mesh)
    opt_state = jax.jit(opt.init)(params)
    start = 0
    print_fn(f'{me}: fresh start on a {dict(mesh.shape)} mesh of {jax.device_count()} devices')
  else:
    restored = manager.restore(start, args=ocp.args.StandardRestore(target))
    params, opt_state = restored['params'], restored['opt_state']
    print_fn(f'{me}: resumed from the checkpoint of step {start}')
  if start >= steps:
    print_fn(f'{me}: the checkpoint is at step {start}; nothing to do for --steps {steps}')
  here, total = local_bytes(opt_state)
  print_fn(f'{me}: holds {here / 1024:.0f} KiB of the {total / 1024:.0f} KiB optimizer state')
  step = make_step(opt)
  loss = float('nan')
  for i in range(start, steps):
    params, opt_state, loss_array = step(params, opt_state, *place_batch(i, mesh))
    item = {'params': params, 'opt_state': opt_state}
    if manager.save(i + 1, args=ocp.args.StandardSave(item), force=i + 1 == steps):
      print_fn(f'{me}: step {i + 1}: checkpoint started (written in the background)')
    if (i + 1) % log_every == 0 or i + 1 == steps:
      loss = float(loss_array)
      print_fn(f'{me}: step {i + 1:>4}/{steps}  loss {loss:.5f}')
  manager.wait_until_finished()
  manager.close()
  return {'final_loss': loss, 'start_step': start}


# --- command line -------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
    prog='python -m rmsprop_optax.demos.multihost',
    description=(
      'Data-parallel training over several processes with the RMSprop state sharded like the '
      'params, and asynchronous orbax checkpoints. Without --process-id it starts --processes '
      'processes on this machine itself; with --coordinator, --num-processes and --process-id '
      'it is one process of a multi-host job (start one per host).'
    ),
  )
  parser.add_argument('--processes', type=int, default=2, help='processes to start here (2)')
  parser.add_argument(
    '--devices-per-process', type=int, default=4, help='virtual CPU devices each (4)'
  )
  parser.add_argument('--steps', type=int, default=300, help='training steps (300)')
  parser.add_argument('--save-every', type=int, default=100, help='checkpoint interval (100)')
  parser.add_argument(
    '--checkpoint-dir',
    default=None,
    help='checkpoint folder; an existing one is resumed (default: a new temporary folder)',
  )
  parser.add_argument(
    '--state', choices=('float32', '8bit'), default='float32', help='optimizer state storage'
  )
  parser.add_argument('--timeout', type=float, default=600, help='seconds before giving up (600)')
  parser.add_argument('--coordinator', help='HOST:PORT of process 0 (one process of a job)')
  parser.add_argument('--num-processes', type=int, help='processes in the job')
  parser.add_argument('--process-id', type=int, help="this process's index, 0 to N-1")
  return parser


def _echo(process_id: int, line: str) -> None:
  """Prints a process's line with its ``[pN]`` prefix."""
  if not gloo_notice(line):
    print(f'[p{process_id}] {line}', flush=True)


def main(argv: Sequence[str] | None = None) -> int:
  """The launcher (no ``--process-id``) or one process of a job."""
  args = _parser().parse_args(argv)
  if args.process_id is not None:
    if args.coordinator is None or args.num_processes is None:
      _parser().error('--process-id needs --coordinator and --num-processes')
    if args.checkpoint_dir is None:
      _parser().error('a process of a job needs --checkpoint-dir (the same on every host)')
    initialize(args.coordinator, args.num_processes, args.process_id)
    train(
      steps=args.steps,
      checkpoint_dir=args.checkpoint_dir,
      save_every=args.save_every,
      state=args.state,
    )
    return 0
  directory = args.checkpoint_dir or tempfile.mkdtemp(prefix='rmsprop_optax_multihost_')
  print(f'checkpoints in {directory}', flush=True)
  command = [
    sys.executable, '-m', 'rmsprop_optax.demos.multihost',
    '--steps', str(args.steps), '--save-every', str(args.save_every),
    '--checkpoint-dir', directory, '--state', args.state,
  ]  # fmt: skip
  launch(
    command,
    args.processes,
    devices_per_process=args.devices_per_process,
    timeout=args.timeout,
    echo=_echo,
  )
  print(
    f'all {args.processes} processes finished; to resume, run again with --checkpoint-dir {directory}'
  )
  return 0


if __name__ == '__main__':
  sys.exit(main())
