"""Every measurement, in one process, into one JSON-ready dict (:func:`run`)."""

from __future__ import annotations

import datetime
import platform
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import optax

from rmsprop_optax.bench import training_step
from rmsprop_optax.bench.bandwidth import Probe, bandwidth_probe
from rmsprop_optax.bench.compile_time import compile_sweep
from rmsprop_optax.bench.configs import CONFIGS, QUANTIZED, TREES, tree_shapes
from rmsprop_optax.bench.numerics import check_numerics
from rmsprop_optax.bench.quantized_state import quantize_cost, skip_reason, state_bytes_table
from rmsprop_optax.bench.report import format_step
from rmsprop_optax.bench.timing import time_step, torch_device


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
    sum(int(np.prod(s)) for s in tree_shapes(t, quick, one_leaf_elements).values()) for t in trees
  )
  # One probe serves the headline figure and the re-probes between samples.
  probe = Probe(largest)
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
        why = skip_reason(config, tree, quick, one_leaf_elements, quantized_trees)
        if why:
          skipped.append({'config': config, 'tree': tree, 'reason': why})
          log(f'{config:<20} {tree:<11} skipped: {why}')
          continue
      row = time_step(config, tree, quick, repeats, target, torch, probe, one_leaf_elements)
      row['max_rel_diff_vs_optax'] = check_numerics(config)
      steps.append(row)
      log(format_step(row))
  quantized_state: dict[str, Any] = {
    'state_bytes': [r for t in trees for r in state_bytes_table(t, quick, one_leaf_elements)],
    'skipped': skipped,
  }
  if any(c in QUANTIZED for c in configs):
    n_cost = tree_shapes('one_leaf', quick, one_leaf_elements)['w'][0]
    log(f'quantize cost on one leaf of {n_cost} elements ...')
    quantized_state['quantize_cost'] = quantize_cost(n_cost, calls=3 if quick else 5)
    log('quantized training step on 1 and 8 devices ...')
    quantized_state['training_step'] = training_step.run(quick, repeats)
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
