"""The quantized training step against float32 state: per-device memory and time, on 1 and 8 devices.

A training step computes its gradient (a least-squares loss on a small
replicated batch), updates and applies it, with params and state donated,
as :func:`rmsprop_optax.step_memory` compiles it. On one device and on a
mesh of 8 (virtual CPU devices, in a subprocess, so the benchmark's own
process keeps one), with the leaf's rows sharded (FSDP) or its columns: per
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
from rmsprop_optax.bench.configs import LR, MOMENTUM

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


def _loss(params: Any, x: jax.Array) -> jax.Array:
  return jnp.sum((x @ params['w']) ** 2)


def _step(opt: Any) -> Any:
  def step(params: Any, state: Any, x: jax.Array) -> tuple[Any, Any]:
    updates, state = opt.update(jax.grad(_loss)(params, x), state, params)
    return optax.apply_updates(params, updates), state

  return jax.jit(step, donate_argnums=(0, 1))


def measure(quick: bool, repeats: int) -> list[dict[str, Any]]:
  """Rows for every layout on this process's devices (1: one layout, 'one device')."""
  # Columns over 8 devices: 2048 / 8 = 256, one whole block per device and row.
  n = 2048 if quick else 4096
  devices = np.array(jax.devices())
  mesh = Mesh(devices, ('d',))
  layouts = (
    {'one device': P()} if len(devices) == 1 else {'rows': P('d', None), 'columns': P(None, 'd')}
  )
  x = jax.device_put(jnp.ones((8, n), jnp.float32) / n, NamedSharding(mesh, P()))
  rows = []
  for layout, spec in layouts.items():
    sharding = NamedSharding(mesh, spec)
    w = jax.device_put(
      jnp.asarray(np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)), sharding
    )
    for settings, kw in SETTINGS.items():
      row: dict[str, Any] = {
        'devices': len(devices),
        'layout': layout,
        'settings': settings,
        'n': n,
      }
      runners = {}
      for state, spec in STATES.items():
        opt = rmsprop(LR, accumulator_dtype=spec, **kw)
        params = {'w': jnp.copy(w)}
        plan = diagnostics.step_memory(opt, params, _loss, x)
        opt_state = jax.jit(opt.init)(params)
        compiled = _step(opt).lower(params, opt_state, x).compile()
        hlo = compiled.as_text()
        row[state] = {
          **plan._asdict(),
          'collectives': sum(hlo.count(f' {op}(') for op in COLLECTIVES),
        }
        runners[state] = [compiled, params, opt_state]
      times: dict[str, list[float]] = {k: [] for k in runners}
      for r in range(repeats + 1):  # the first round warms up
        for k in sorted(runners, reverse=bool(r % 2)):
          step, params, opt_state = runners[k]
          t0 = time.perf_counter()
          params, opt_state = step(params, opt_state, x)
          jax.block_until_ready(params)
          runners[k][1:] = [params, opt_state]
          if r:
            times[k].append(time.perf_counter() - t0)
      row['seconds'] = {k: statistics.median(v) for k, v in times.items()}
      for state in ('q8', 'q8f'):
        row[f'{state}_over_float32_time'] = statistics.median(
          [a / b for a, b in zip(times[state], times['float32'])]
        )
        row[f'{state}_over_float32_peak'] = row[state]['peak_bytes'] / row['float32']['peak_bytes']
      rows.append(row)
  return rows


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
    '| devices | layout | settings | leaf | state MiB f32 / q8 | temp MiB f32 / q8 / q8f '
    '| peak MiB f32 / q8 / q8f | q8, q8f / f32 peak | collectives f32 / q8 / q8f '
    '| ms f32 / q8 / q8f | q8 / f32 time | q8f / f32 time |',
    '|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|',
  ]
  for r in rows:
    f, q, h = r['float32'], r['q8'], r['q8f']
    ms = r['seconds']
    lines.append(
      f'| {r["devices"]} | {r["layout"]} | {r["settings"]} | {r["n"]}x{r["n"]} '
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
