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
  step that keeps per-leaf state can compile to; then the same step with
  8-bit state against float32 state on ``n`` leaves of distinct shapes
  ``(64 + i, 128)``, each traced and compiled anew;
* peak memory: ``compiled.memory_analysis()`` (arguments + outputs - aliased +
  temporaries) against params + grads + state;
* quantized state (configs ``plain_q8``, ``centered_momentum_q8``,
  ``plain_q4``: ``accumulator_dtype=quantized(8)`` or ``quantized(4)``;
  ``plain_q8f``, ``centered_momentum_q8f``: ``quantized(8, map='float')``): each
  row times ours with quantized state, ``optax.rmsprop`` with the same
  settings, the A/A control and ours with float32 state (``float32_state``)
  in one rotation (a Williams square of four orders); it reports the state
  bytes (``jax.eval_shape(opt.init, params)``) against float32 state, the
  peak memory and XLA traffic of the donated quantized step, and the step
  time over float32-state ours and over optax. A state-bytes table gives
  float32, 8-bit and 4-bit state for every tree, and "where the time goes"
  times the parts of the 8-bit step alone on one flat leaf. A training-step
  table (:mod:`rmsprop_optax.bench.training_step`) times float32, 8-bit and
  8-bit ``map='float'`` state in a step that computes its gradient, with
  per-device state, temporaries, peak and collectives: one 4096x4096 leaf on
  1 and 8 devices, and the transformer tree on one. ``--quick`` times
  the quantized rows on the one-leaf tree only; a row whose tree has no leaf
  of ``min_size`` (4096) elements is skipped (its state is all float32).

``--quick`` shrinks everything for CI; ``--json PATH`` writes the results;
``--one-leaf-elements N`` sets the size of the one-leaf tree (1e9 on a GPU:
``bench --trees one_leaf --one-leaf-elements 1000000000 --no-torch``).

The printed output ends with how to read the figures on XLA:CPU.
"""

from __future__ import annotations

import argparse
import json
import sys

from rmsprop_optax.bench.configs import CONFIGS, TREES
from rmsprop_optax.bench.report import format_table
from rmsprop_optax.bench.suite import run


def main(argv: list[str]) -> int:
  # The module docstring (what is measured) is the help's epilog.
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
