"""The quantized training step against float32 state: per-device memory and time, on 1 and 8 devices.

A training step computes its gradient (a least-squares loss on a small
replicated batch), updates and applies it, with params and state donated,
as :func:`rmsprop_optax.step_memory` compiles it. On one device (one leaf,
and the step benchmark's transformer tree) and on a mesh of 8 (virtual CPU
devices, in a subprocess, so the benchmark's own process keeps one), with
the leaf's rows sharded (FSDP) or its columns: per
device, the state's bytes, the step's temporaries and peak from XLA's memory
analysis, the collectives in the compiled step, and the step time, float32
and 8-bit interleaved (median of the per-sample ratios). 8-bit state is
timed with the default (dynamic) code map and with ``map='float'``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from rmsprop_optax import diagnostics
from rmsprop_optax._quantize import quantized
from rmsprop_optax._rmsprop import rmsprop
from rmsprop_optax.bench.configs import LR, MOMENTUM, materialize, transformer_tree

DEVICES = 8
SETTINGS: dict[str, dict[str, Any]] = {
  'plain': {},
  'centered_momentum': {'centered': True, 'momentum': MOMENTUM},
}
# How the state is stored, by label: float32, the 8-bit dynamic map, the 8-bit float map.
STATES: dict[str, Any] = {
  'float32': None,
  'q8': quantized(8),
  'q8f': quantized(8, map='float'),
}
COLLECTIVES = ('all-gather', 'all-reduce', 'all-to-all', 'collective-permute', 'reduce-scatter')


def _loss(params: Any, xs: Any) -> jax.Array:
  # Each leaf (rows first) against its own small batch: a gradient as large as the params.
  return jnp.sum(jnp.stack([jnp.sum((xs[k] @ w) ** 2) for k, w in params.items()]))


def _step(opt: Any) -> Any:
  def step(params: Any, state: Any, xs: Any) -> tuple[Any, Any]:
    updates, state = opt.update(jax.grad(_loss)(params, xs), state, params)
    return optax.apply_updates(params, updates), state

  return jax.jit(step, donate_argnums=(0, 1))


def _batch(params: Any, sharding: Any) -> Any:
  return {
    k: jax.device_put(jnp.ones((8, w.shape[0]), jnp.float32) / w.shape[0], sharding)
    for k, w in params.items()
  }


def measure(quick: bool, repeats: int) -> list[dict[str, Any]]:
  """Rows for every layout on this process's devices.

  On one device: one n x n leaf, then the transformer tree of the step
  benchmark (:func:`rmsprop_optax.bench.configs.transformer_tree`); on 8, the
  leaf with its rows sharded and with its columns.
  """
  # Columns over 8 devices: 2048 / 8 = 256, one whole block per device and row.
  n = 2048 if quick else 4096
  devices = np.array(jax.devices())
  mesh = Mesh(devices, ('d',))
  layouts = (
    {'one device': P()} if len(devices) == 1 else {'rows': P('d', None), 'columns': P(None, 'd')}
  )
  leaf = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
  cases = [
    (layout, f'{n}x{n}', {'w': jax.device_put(jnp.asarray(leaf), NamedSharding(mesh, spec))})
    for layout, spec in layouts.items()
  ]
  if len(devices) == 1:
    shapes = transformer_tree(quick)
    cases.append(
      ('one device', f'transformer ({len(shapes)} leaves)', materialize(shapes, 0, 0.02))
    )
  replicated = NamedSharding(mesh, P())
  return [
    _row(len(devices), layout, label, settings, kw, params, _batch(params, replicated), repeats)
    for layout, label, params in cases
    for settings, kw in SETTINGS.items()
  ]


def _row(
  devices: int,
  layout: str,
  label: str,
  settings: str,
  kw: dict[str, Any],
  params: Any,
  xs: Any,
  repeats: int,
) -> dict[str, Any]:
  """float32, q8 and q8f state on ``params``: memory from the compiled step, times interleaved."""
  row: dict[str, Any] = {
    'devices': devices,
    'layout': layout,
    'settings': settings,
    'params': label,
    'elements': sum(w.size for w in params.values()),
  }
  runners = {}
  for state, spec in STATES.items():
    opt = rmsprop(LR, accumulator_dtype=spec, **kw)
    own = jax.tree.map(jnp.copy, params)
    plan = diagnostics.step_memory(opt, own, _loss, xs)
    opt_state = jax.jit(opt.init)(own)
    compiled = _step(opt).lower(own, opt_state, xs).compile()
    hlo = compiled.as_text()
    row[state] = {
      **plan._asdict(),
      'collectives': sum(hlo.count(f' {op}(') for op in COLLECTIVES),
    }
    runners[state] = [compiled, own, opt_state]
  times: dict[str, list[float]] = {k: [] for k in runners}
  for r in range(repeats + 1):  # the first round warms up
    for k in sorted(runners, reverse=bool(r % 2)):
      step, own, opt_state = runners[k]
      t0 = time.perf_counter()
      own, opt_state = step(own, opt_state, xs)
      jax.block_until_ready(own)
      runners[k][1:] = [own, opt_state]
      if r:
        times[k].append(time.perf_counter() - t0)
  row['seconds'] = {k: statistics.median(v) for k, v in times.items()}
  for state in ('q8', 'q8f'):
    row[f'{state}_over_float32_time'] = statistics.median(
      [a / b for a, b in zip(times[state], times['float32'])]
    )
    row[f'{state}_over_float32_peak'] = row[state]['peak_bytes'] / row['float32']['peak_bytes']
  return row


def run(quick: bool, repeats: int) -> list[dict[str, Any]]:
  """:func:`measure` on this process's one device and in a subprocess with 8."""
  rows = measure(quick, repeats)
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  env['XLA_FLAGS'] = f'{env.get("XLA_FLAGS", "")} --xla_force_host_platform_device_count={DEVICES}'
  args = [sys.executable, '-m', 'rmsprop_optax.bench.training_step', str(int(quick)), str(repeats)]
  out = subprocess.run(args, env=env, capture_output=True, text=True, check=True)
  return rows + json.loads(out.stdout.strip().splitlines()[-1])


def format_rows(rows: list[dict[str, Any]]) -> list[str]:
  mib = lambda b: f'{b / 2**20:.1f}'
  lines = [
    '',
    'Quantized training step (gradient computed in the step, params and state donated), per '
    "device; q8: quantized(8), q8f: quantized(8, map='float'):",
    '',
    '| devices | layout | settings | params | state MiB f32 / q8 | temp MiB f32 / q8 / q8f '
    '| peak MiB f32 / q8 / q8f | q8, q8f / f32 peak | collectives f32 / q8 / q8f '
    '| ms f32 / q8 / q8f | q8 / f32 time | q8f / f32 time |',
    '|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|',
  ]
  for r in rows:
    f, q, h = r['float32'], r['q8'], r['q8f']
    ms = r['seconds']
    lines.append(
      f'| {r["devices"]} | {r["layout"]} | {r["settings"]} | {r["params"]} '
      f'| {mib(f["state_bytes"])} / {mib(q["state_bytes"])} '
      f'| {mib(f["temp_bytes"])} / {mib(q["temp_bytes"])} / {mib(h["temp_bytes"])} '
      f'| {mib(f["peak_bytes"])} / {mib(q["peak_bytes"])} / {mib(h["peak_bytes"])} '
      f'| {r["q8_over_float32_peak"]:.2f}, {r["q8f_over_float32_peak"]:.2f} '
      f'| {f["collectives"]} / {q["collectives"]} / {h["collectives"]} '
      f'| {1e3 * ms["float32"]:.1f} / {1e3 * ms["q8"]:.1f} / {1e3 * ms["q8f"]:.1f} '
      f'| {r["q8_over_float32_time"]:.2f} | {r["q8f_over_float32_time"]:.2f} |'
    )
  return lines


if __name__ == '__main__':
  print(json.dumps(measure(bool(int(sys.argv[1])), int(sys.argv[2]))))
