"""The low_memory demo: float32 vs 8-bit vs 4-bit RMSprop state on the applications (fast mode)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import rmsprop_optax
from rmsprop_optax.demos import cli, dqn, low_memory, plotting

# Fast mode: digits (chance 0.10) and matrix factorisation (global mean 0.996).
DIGITS_MIN_ACCURACY = 0.85
MF_MAX_RMSE = 0.6


@pytest.fixture(scope='module')
def result():
  return low_memory.run(fast=True)


def test_structure(result):
  assert result['name'] == 'low_memory'
  assert list(result['apps']) == list(low_memory.FAST_APPS)
  labels = list(low_memory.SPECS)
  assert list(result['metrics']) == list(result['curves']) == labels
  for app, r in result['apps'].items():
    assert r['seeds'] == list(low_memory.SEEDS_FAST)
    assert r['metric'] in low_memory.HIGHER_IS_BETTER
    for label in labels:
      assert len(r['finals'][label]) == len(low_memory.SEEDS_FAST)
      assert all(len(c) == len(r['curve_x']) for c in r['curves'][label])
      s = result['summary'][app][label]
      assert s['min'] <= s['mean'] <= s['max']
      assert isinstance(s['inside_float32_range'], bool)
    assert result['summary'][app]['float32 state']['state_ratio'] == 1.0
  table = cli.format_results([result])
  assert 'digits: test accuracy, mean (min-max, 1 seeds)' in table


def test_8bit_state_learns(result):
  digits = result['apps']['digits']['finals']
  mf = result['apps']['matrix_factorization']['finals']
  for label in ('float32 state', '8-bit state'):
    assert min(digits[label]) > DIGITS_MIN_ACCURACY, label
    assert max(mf[label]) < MF_MAX_RMSE, label


def test_state_is_smaller(result):
  for app, per_spec in result['summary'].items():
    r8, r4 = per_spec['8-bit state']['state_ratio'], per_spec['4-bit state']['state_ratio']
    assert r4 < r8 < 0.45, app  # small models: short last axes, so one scale per few elements


def test_quantized_leaf_bytes_at_a_realistic_size():
  """1 byte per element plus a float32 scale per 256: 0.254x float32 (4 bits: 0.133x)."""
  params = low_memory.gpt2_small_params()
  for bits, bound in ((8, 0.27), (4, 0.14)):
    opt = rmsprop_optax.rmsprop(
      1e-3, centered=True, accumulator_dtype=rmsprop_optax.quantized(bits)
    )
    stored, as_float32 = low_memory.quantized_leaf_bytes(opt, params)
    assert as_float32 > 0.99 * 2 * 4 * sum(math.prod(p.shape) for p in params.values())
    assert stored <= bound * as_float32, bits
  plain = low_memory.state_bytes(rmsprop_optax.rmsprop(1e-3), params)
  eight = low_memory.state_bytes(
    rmsprop_optax.rmsprop(1e-3, accumulator_dtype=rmsprop_optax.quantized(8)), params
  )
  assert eight <= 0.27 * plain


def test_app_leaf_bytes_follow_the_block_layout():
  """Codes: one byte per element; scales: one float32 per block along the last axis."""
  opt = low_memory.rmsprop_optimizer('digits', low_memory.SPECS['8-bit state'], fast=True)
  params = {'w': jax.ShapeDtypeStruct((512, 64), jnp.float32)}
  stored, as_float32 = low_memory.quantized_leaf_bytes(opt, params)
  assert (stored, as_float32) == (512 * 64 + 4 * 512, 4 * 512 * 64)


def test_dqn_with_an_accumulator_dtype_is_the_preset():
  """With a spec, dqn builds the preset's rmsprop call itself: float32 state matches it."""
  params = {'w': jnp.linspace(-1.0, 1.0, 12).reshape(3, 4)}
  preset = dqn.optimizers()['rmsprop (dqn_nature)']
  same = dqn.optimizers(accumulator_dtype=jnp.float32)['rmsprop (dqn_nature)']
  rng = np.random.default_rng(0)
  states = [preset.init(params), same.init(params)]
  for _ in range(5):
    g = {'w': jnp.asarray(rng.normal(size=(3, 4)), jnp.float32)}
    (u1, states[0]), (u2, states[1]) = (
      opt.update(g, s, params) for opt, s in zip((preset, same), states, strict=True)
    )
    np.testing.assert_array_equal(u1['w'], u2['w'])
    params = optax.apply_updates(params, u1)


def test_registered_and_not_in_all():
  assert cli.DEMOS['low_memory'] == low_memory.__name__
  assert 'low_memory' in cli.NOT_IN_ALL


def test_figure_renders(result, tmp_path):
  path = plotting.plot_result(result, tmp_path / 'low_memory.png')
  with open(path, 'rb') as f:
    assert f.read(8) == b'\x89PNG\r\n\x1a\n'
