"""Sharding on 8 virtual CPU devices, each case in a fresh subprocess.

The cases live in ``tests/_sharding_worker.py`` and run with
``XLA_FLAGS=--xla_force_host_platform_device_count=8`` in their own process,
so this pytest process (and the rest of the suite) keeps its single device.
Each case prints ``RESULT {json}``; a failing case's traceback is shown here.

What they check (references and tolerances are the worker's constants):

- ``auto`` / ``explicit``: on a 2x4 ``('data', 'model')`` mesh with Auto axes
  (``jax.sharding.Mesh``) and with Explicit axes (``jax.make_mesh`` under
  ``jax.set_mesh``), params in a data x model layout and in an FSDP layout:
  ``jax.jit(opt.init)`` gives every ``nu``, ``mu`` and momentum buffer the
  sharding of its param (counts replicated) for every preset and option
  combination in ``_optimizer_zoo``; 20 jitted steps keep it; the result
  equals the one-device run within ``SHARDED_RTOL = 1e-6`` (float32).
- ``quantized``: 8- and 4-bit state (codes and block scales) is sharded like
  the params under ``jit(init)`` and after jitted steps, and its codes equal
  the one-device run's.
- ``train``: end to end with a data-sharded batch; loss curves agree to
  ``TRAIN_LOSS_RTOL``. ``optax.rmsprop``'s ``jit(init)`` state lands on one
  device on the same Auto mesh, ours is sharded like the params.
- ``eval_shape``: ``jax.eval_shape(opt.init, params)`` plans shapes, dtypes,
  bytes (and per-device bytes) without allocating.
- ``data_parallel``: ``rmsprop_optax.demos.data_parallel`` (``shard_map`` with
  ``pmean``, and ``jit`` with a sharded batch) matches one-device training.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import jax
import pytest
from _harness import run_worker

TESTS = Path(__file__).resolve().parent
WORKER = TESTS / '_sharding_worker.py'
TIMEOUT_S = 900


def run_case(case: str) -> dict:
  result = run_worker(WORKER, case, timeout=TIMEOUT_S)
  assert result['case'] == case, result
  return result


@pytest.mark.slow
@pytest.mark.parametrize('case', ['auto', 'explicit'])
def test_state_sharded_like_params_and_equal_to_one_device(case):
  result = run_case(case)
  # Every optimizer ran, and each checked at least nu for all 8 params twice.
  assert result['state_leaves_checked'] >= 2 * 8 * len(result['per_optimizer'])
  assert result['max_rel_err'] <= 1e-6


def test_quantized_state_sharded_like_params_and_equal_to_one_device():
  result = run_case('quantized')
  for bits in ('q8', 'q4', 'q8f'):
    assert result[bits]['codes_equal'] == result[bits]['codes_total'] > 0, result[bits]
    assert result[bits]['params_rel_err'] <= 1e-6


def test_quantized_step_memory_per_device_and_no_new_collective():
  result = run_case('step_memory')
  for layout, settings, code_map in itertools.product(
    ('fsdp', 'dm', 'stacked', 'few_rows'), ('', '_cm'), ('q8', 'q8f')
  ):
    f32, q8 = result[f'{layout}_float32{settings}'], result[f'{layout}_{code_map}{settings}']
    # 2**24 float32 per moment over the devices that hold a shard of it: 4 ('model') or all 8.
    shards = 4 if layout == 'dm' else 8
    moments = 3 if settings else 1
    assert f32['state_bytes'] == moments * 2**24 * 4 // shards + 4
    # The 8-bit step's temporaries: the float32 step's (the gradient) plus
    # chunk buffers, within 1/16 of the float32 state they replace.
    assert q8['temp_bytes'] - f32['temp_bytes'] <= f32['state_bytes'] / 16, (layout, f32, q8)
    # (The few long rows' loss holds an activation as large as the gradient: 0.81x there.)
    assert q8['peak_bytes'] < (0.82 if layout == 'few_rows' else 0.8) * f32['peak_bytes'], (
      layout,
      f32,
      q8,
    )
    assert q8['collectives'] == f32['collectives'], (layout, f32, q8)


def test_sharded_training_and_optax_difference():
  result = run_case('train')
  assert result['optax_rmsprop_buffers_on_one_device'] == 24


def test_eval_shape_plans_memory_without_allocating():
  result = run_case('eval_shape')
  for mesh in ('auto', 'explicit'):
    plan = result[mesh]
    # nu only, float32 for the bf16 half of the params: 2 x (16*32+32+32*8+8) floats + count.
    assert plan['pytorch']['bytes'] == 4 * 2 * (16 * 32 + 32 + 32 * 8 + 8) + 4


def test_data_parallel_example_on_8_devices():
  result = run_case('data_parallel')
  assert result['shard_map']['devices'] == 8


def test_data_parallel_example_on_one_device():
  """The example also runs unchanged in this (single-device) process."""
  from rmsprop_optax.demos import data_parallel

  assert jax.device_count() == 1  # the 8-device flag did not leak into the suite
  result = data_parallel.run(fast=True)
  m = result['metrics']
  assert m['shard_map']['devices'] == 1
  assert m['shard_map']['final_loss'] < 0.5 * m['shard_map']['initial_loss']
  assert set(result['curves']) == {'shard_map', 'jit', 'one device'}
