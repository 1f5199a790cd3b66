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
    assert r['seeds'] == list(range(low_memory.NUM_SEEDS_FAST))
    assert r['metric'] in low_memory.HIGHER_IS_BETTER
    for label in labels:
      assert len(r['finals'][label]) == low_memory.NUM_SEEDS_FAST
      assert all(len(c) == len(r['curve_x']) for c in r['curves'][label])
      s = result['summary'][app][label]
      assert s['min'] <= s['mean'] <= s['max']
      assert isinstance(s['inside_float32_range'], bool)
    assert result['summary'][app]['float32 state']['state_ratio'] == 1.0
  table = cli.format_results([result])
  assert 'digits: test accuracy, mean (min-max, 1 seeds)' in table


def test_num_seeds_runs_consecutive_seeds_from_seed(monkeypatch):
  seen: dict[str, tuple[int, ...]] = {}

  def fake_run_app(app, *, fast, seeds, progress):
    seen[app] = tuple(seeds)
    return {'seeds': list(seeds)}

  monkeypatch.setattr(low_memory, 'run_app', fake_run_app)
  monkeypatch.setattr(low_memory, 'assemble', lambda per_app, fast: per_app)
  assert low_memory.run(fast=True, seed=5, num_seeds=4) == {
    app: {'seeds': [5, 6, 7, 8]} for app in low_memory.FAST_APPS
  }
  low_memory.run(apps=('dqn',))
  assert seen['dqn'] == tuple(range(low_memory.NUM_SEEDS_FULL))
  with pytest.raises(ValueError, match='num_seeds must be at least 1, got 0'):
    low_memory.run(fast=True, num_seeds=0)


def test_paired_difference():
  """Mean of the per-seed differences and its standard error, sd(ddof=1) / sqrt(n)."""
  d = low_memory.paired_difference([3.0, 5.0, 10.0], [2.0, 3.0, 6.0])  # differences 1, 2, 4
  assert d['mean'] == pytest.approx(7 / 3)
  sd = math.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) / 2)
  assert d['se'] == pytest.approx(sd / math.sqrt(3))
  one = low_memory.paired_difference([1.5], [1.0])
  assert one['mean'] == 0.5 and math.isnan(one['se'])


def test_verdicts_table_rows():
  app_result = {
    'finals': {
      'float32 state': [1.0, 2.0, 3.0],
      '8-bit state': [1.5, 2.0, 4.0],
      '4-bit state': [9.0] * 3,
    },
    'state_bytes': {'float32 state': 400, '8-bit state': 100, '4-bit state': 50},
    'seeds': [0, 1, 2],
    'metric': 'test_rmse',
    'curves': {label: [[1.0]] * 3 for label in low_memory.SPECS},
    'curve_x': [0],
    'curve_xlabel': 'step',
  }
  v = low_memory.verdicts(app_result)
  assert v['8-bit state']['inside_float32_range'] and not v['4-bit state']['inside_float32_range']
  assert v['8-bit state']['difference']['mean'] == pytest.approx(0.5)
  assert v['4-bit state']['state_ratio'] == 0.125
  metrics = low_memory.assemble({'matrix_factorization': app_result}, fast=False)['metrics']
  row = 'matrix_factorization: minus float32, paired by seed, mean (SE)'
  assert metrics['8-bit state'][row] == '+0.5 (SE 0.29)'  # differences 0.5, 0, 1
  assert row not in metrics['float32 state']


def test_8bit_state_learns(result):
  digits = result['apps']['digits']['finals']
  mf = result['apps']['matrix_factorization']['finals']
  for label in ('float32 state', '8-bit state', '8-bit float state'):
    assert min(digits[label]) > DIGITS_MIN_ACCURACY, label
    assert max(mf[label]) < MF_MAX_RMSE, label


def test_state_is_smaller(result):
  for app, per_spec in result['summary'].items():
    r8, r4 = per_spec['8-bit state']['state_ratio'], per_spec['4-bit state']['state_ratio']
    assert r4 < r8 < 0.45, app  # small models: short last axes, so one scale per few elements
    assert per_spec['8-bit float state']['state_bytes'] == per_spec['8-bit state']['state_bytes']


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
