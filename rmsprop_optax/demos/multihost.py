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

The model, its mesh and its sharding are :mod:`rmsprop_optax.demos.sharded_mlp`'s.
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

from rmsprop_optax.demos.localhost_cluster import gloo_notice, launch
from rmsprop_optax.demos.sharded_mlp import (
  abstract_params,
  host_params,
  initialize,
  local_bytes,
  make_mesh,
  make_optimizer,
  make_step,
  place_batch,
  place_params,
  state_target,
)

NAME = 'multihost'


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
