"""One process of a multi-process JAX job, started by test_multihost.py through the localhost cluster launcher.

``python tests/_multihost_worker.py MODE [options] --coordinator H:P
--num-processes N --process-id I`` joins the job (``jax.distributed.initialize``
over localhost, gloo collectives, ``JAX_NUM_CPU_DEVICES`` devices each), runs
MODE on one global mesh and, from process 0, prints ``RESULT {json}`` and
writes ``.npz`` files of the global arrays (gathered with
``multihost_utils.process_allgather``; NumPy's format, no pickle).

Modes:

- ``sharding``: ``jax.jit(opt.init)`` on global params, for every optimizer of
  ``_optimizer_zoo`` and quantized state, in both layouts of the demo
  (``fsdp``, ``dm``): each state buffer must have its param's sharding; the
  restore target built by ``sharded_mlp.state_target`` must say the same.
- ``train``: data-parallel training from the demo's initial params, each
  process feeding its own rows of every batch; a checkpoint at ``--save-at``
  (orbax ``CheckpointManager``), the state at ``--save-at`` and at the end
  written as ``.npz``.
- ``restore``: restores the latest complete checkpoint on this job's
  topology, against ``jax.eval_shape(opt.init, params)`` with this mesh's
  shardings, writes what it restored and where training from it ends.
- ``crash``: as ``train``, then starts an asynchronous save at ``--crash-at``
  whose commit waits (``COMMIT WAITING``); the test SIGKILLs the process then.

The functions above ``main`` also run in the test process (one device) for the
single-process reference.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _optimizer_zoo as zoo  # noqa: E402

import rmsprop_optax  # noqa: E402
from rmsprop_optax.demos import sharded_mlp  # noqa: E402

# The optimizers whose trajectories and checkpoints are compared: the demo's
# centered RMSprop with momentum, with float32 and with 8-bit state.
STATES = ('float32', '8bit')


def flatten(tree: Any) -> dict[str, np.ndarray]:
  """``{keystr(path): host array}`` of a pytree of global arrays (a collective: every process)."""
  from jax.experimental import multihost_utils

  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  gathered = multihost_utils.process_allgather([x for _, x in leaves], tiled=True)
  return {jax.tree_util.keystr(p): np.asarray(g) for (p, _), g in zip(leaves, gathered)}


def trajectory(
  state: str,
  mesh: Any,
  layout: str,
  start: int,
  stop: int,
  params: Any = None,
  opt_state: Any = None,
) -> tuple[Any, Any, list[float]]:
  """Trains steps ``start`` to ``stop`` of the demo's problem; fresh params when none are given."""
  opt = sharded_mlp.make_optimizer(state)
  if params is None:
    params = sharded_mlp.place_params(sharded_mlp.host_params(), mesh, layout)
    opt_state = jax.jit(opt.init)(params)
  step = sharded_mlp.make_step(opt)
  losses = []
  for i in range(start, stop):
    params, opt_state, loss = step(params, opt_state, *sharded_mlp.place_batch(i, mesh))
    losses.append(float(loss))
  return params, opt_state, losses


def mesh_from(arg: str | None) -> Any:
  return sharded_mlp.make_mesh(None if arg is None else tuple(int(n) for n in arg.split('x')))


def _write(path: str, arrays: dict[str, np.ndarray]) -> None:
  if jax.process_index() == 0:
    np.savez(path, **arrays)


def _target(opt: Any, mesh: Any, layout: str) -> dict[str, Any]:
  params = sharded_mlp.abstract_params(mesh, layout)
  return {'params': params, 'opt_state': sharded_mlp.state_target(opt, params)}


def case_sharding(args: argparse.Namespace) -> dict[str, Any]:
  from jax.sharding import NamedSharding

  mesh = mesh_from(args.mesh)
  optimizers = {name: zoo.OPTIMIZERS[name] for name in zoo.OPTIMIZERS}
  for bits in (8, 4):
    spec = rmsprop_optax.quantized(bits, block_size=64, min_size=1024)
    optimizers[f'quantized{bits}'] = lambda spec=spec: rmsprop_optax.rmsprop(
      1e-2, momentum=0.9, centered=True, accumulator_dtype=spec
    )
  checked: dict[str, int] = {}
  for layout in sharded_mlp.LAYOUTS:
    specs = sharded_mlp.param_specs(layout)
    params = sharded_mlp.place_params(sharded_mlp.host_params(), mesh, layout)
    for name, make in optimizers.items():
      opt = make()
      state = jax.jit(opt.init)(params)
      target = sharded_mlp.state_target(opt, sharded_mlp.abstract_params(mesh, layout))
      n = 0
      leaves = jax.tree_util.tree_flatten_with_path(state)[0]
      assert len(leaves) == len(jax.tree.leaves(target)), name
      for (path, leaf), want in zip(leaves, jax.tree.leaves(target)):
        where = f'{name} ({layout}) {jax.tree_util.keystr(path)}'
        keys = [getattr(k, 'key', None) for k in path]
        owner = next((k for k in keys if k in specs), None)
        if owner is None or leaf.ndim == 0:  # counts and other scalars: one copy everywhere
          assert leaf.sharding.is_fully_replicated, (where, leaf.sharding)
        else:
          expected = NamedSharding(mesh, specs[owner])
          assert expected.is_equivalent_to(leaf.sharding, leaf.ndim), (where, leaf.sharding)
          n += 1
        assert want.sharding.is_equivalent_to(leaf.sharding, leaf.ndim), (where, want.sharding)
        assert (want.shape, want.dtype) == (leaf.shape, leaf.dtype), where
      if name in zoo.OPTIMIZERS:  # every param-shaped buffer was checked
        assert n == len(specs) * len(zoo.expected_buffers(name)), (name, layout, n)
      checked[f'{name} ({layout})'] = n
    if layout == 'fsdp':
      here, total = sharded_mlp.local_bytes(params)
      checked['fsdp: params bytes on process 0 / total (x1000)'] = round(1000 * here / total)
  return {'checked': checked, 'devices': jax.device_count(), 'processes': jax.process_count()}


def case_train(args: argparse.Namespace) -> dict[str, Any]:
  import orbax.checkpoint as ocp

  mesh = mesh_from(args.mesh)
  out: dict[str, Any] = {}
  for state in STATES:
    manager = ocp.CheckpointManager(os.path.join(args.dir, state))
    params, opt_state, first = trajectory(state, mesh, args.layout, 0, args.save_at)
    manager.save(
      args.save_at, args=ocp.args.StandardSave({'params': params, 'opt_state': opt_state})
    )
    manager.wait_until_finished()
    saved = flatten({'params': params, 'opt_state': opt_state})
    _write(os.path.join(args.dir, f'{state}_saved.npz'), saved)
    params, opt_state, rest = trajectory(
      state, mesh, args.layout, args.save_at, args.save_at + 1, params, opt_state
    )
    _write(
      os.path.join(args.dir, f'{state}_next.npz'),
      flatten({'params': params, 'opt_state': opt_state}),
    )
    params, opt_state, more = trajectory(
      state, mesh, args.layout, args.save_at + 1, args.steps, params, opt_state
    )
    rest += more
    _write(
      os.path.join(args.dir, f'{state}_final.npz'),
      flatten({'params': params, 'opt_state': opt_state}),
    )
    manager.close()
    out[state] = {'losses': first + rest}
  return out


def case_restore(args: argparse.Namespace) -> dict[str, Any]:
  import orbax.checkpoint as ocp

  mesh = mesh_from(args.mesh)
  out: dict[str, Any] = {'mesh': dict(mesh.shape), 'processes': jax.process_count()}
  for state in args.states.split(','):
    manager = ocp.CheckpointManager(os.path.join(args.dir, state))
    step = manager.latest_step()
    opt = sharded_mlp.make_optimizer(state)
    target = _target(opt, mesh, args.layout)
    restored = manager.restore(step, args=ocp.args.StandardRestore(target))
    assert jax.tree.structure(restored) == jax.tree.structure(target)
    for got, want in zip(jax.tree.leaves(restored), jax.tree.leaves(target)):
      assert got.sharding.is_equivalent_to(want.sharding, got.ndim), (got.sharding, want.sharding)
    _write(os.path.join(args.out, f'{state}_restored.npz'), flatten(restored))
    params, opt_state, losses = trajectory(
      state, mesh, args.layout, step, step + 1, restored['params'], restored['opt_state']
    )
    _write(
      os.path.join(args.out, f'{state}_next.npz'),
      flatten({'params': params, 'opt_state': opt_state}),
    )
    params, opt_state, more = trajectory(
      state, mesh, args.layout, step + 1, args.steps, params, opt_state
    )
    losses += more
    _write(
      os.path.join(args.out, f'{state}_continued.npz'),
      flatten({'params': params, 'opt_state': opt_state}),
    )
    out[state] = {'step': step, 'all_steps': list(manager.all_steps()), 'losses': losses}
    manager.close()
  return out


def commit_waits_at(stop_at: int) -> type:
  """A temporary-path class for orbax whose commit of step ``stop_at`` never comes.

  Orbax writes a checkpoint into a temporary folder and commits it by renaming
  (``AtomicRenameTemporaryPath.finalize``, on process 0 once every process has
  written). For step ``stop_at`` this prints ``COMMIT WAITING <step>`` and waits
  instead, so a kill on that line always lands mid-save, after the writes and
  before the commit, however fast or loaded the machine is.
  """
  from orbax.checkpoint._src.path import atomicity

  class CommitWaits(atomicity.AtomicRenameTemporaryPath):
    async def finalize(self, *args: Any, **kwargs: Any) -> None:
      if self._final_path.name == str(stop_at):
        print(f'COMMIT WAITING {stop_at}', flush=True)
        await asyncio.sleep(600)  # the test kills this process
      await super().finalize(*args, **kwargs)

  return CommitWaits


def case_crash(args: argparse.Namespace) -> dict[str, Any]:
  import orbax.checkpoint as ocp

  mesh = mesh_from(args.mesh)
  state = STATES[0]
  manager = ocp.CheckpointManager(
    os.path.join(args.dir, state),
    options=ocp.CheckpointManagerOptions(
      enable_async_checkpointing=True,
      temporary_path_class=commit_waits_at(args.crash_at),
    ),
  )
  params, opt_state, _ = trajectory(state, mesh, args.layout, 0, args.save_at)
  manager.save(args.save_at, args=ocp.args.StandardSave({'params': params, 'opt_state': opt_state}))
  manager.wait_until_finished()
  print(f'COMPLETE SAVE {args.save_at}', flush=True)
  params, opt_state, _ = trajectory(
    state, mesh, args.layout, args.save_at, args.crash_at, params, opt_state
  )
  manager.save(
    args.crash_at, args=ocp.args.StandardSave({'params': params, 'opt_state': opt_state})
  )
  print(f'ASYNC SAVE STARTED {args.crash_at}', flush=True)
  time.sleep(600)  # the test kills this process; never reached otherwise
  return {}


CASES = {
  'sharding': case_sharding,
  'train': case_train,
  'restore': case_restore,
  'crash': case_crash,
}


def main(argv: list[str]) -> int:
  parser = argparse.ArgumentParser()
  parser.add_argument('mode', choices=sorted(CASES))
  parser.add_argument('--dir', help='checkpoint folder (train, crash, restore)')
  parser.add_argument('--out', help='where restore writes its .npz files')
  parser.add_argument('--layout', default='fsdp', choices=sharded_mlp.LAYOUTS)
  parser.add_argument('--mesh', help="'DATAxMODEL'; default: processes x devices per process")
  parser.add_argument('--steps', type=int, default=30)
  parser.add_argument('--save-at', type=int, default=12)
  parser.add_argument('--crash-at', type=int, default=20)
  parser.add_argument('--states', default=','.join(STATES), help='restore: which optimizers')
  parser.add_argument('--coordinator')
  parser.add_argument('--num-processes', type=int, default=1)
  parser.add_argument('--process-id', type=int, default=0)
  args = parser.parse_args(argv)
  sharded_mlp.initialize(args.coordinator, args.num_processes, args.process_id)
  result = CASES[args.mode](args)
  if jax.process_index() == 0:
    print('RESULT ' + json.dumps(result), flush=True)
  if args.num_processes > 1:
    jax.distributed.shutdown()
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
