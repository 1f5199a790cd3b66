"""The benchmark runs, its JSON has the documented schema, and what it times is the same math.

No timing assertions: machines are noisy. Only that every figure is a finite
positive number, and that ours and ``optax.rmsprop`` compute the same steps on
the benchmarked configurations (reference: ``optax.rmsprop`` itself, float32).
"""

from __future__ import annotations

import json
import math

import pytest

from rmsprop_optax import bench

# ours vs optax.rmsprop in float32 after 3 steps; the PyTorch preset puts lr
# outside the momentum buffer (optax inside), equal up to rounding.
NUMERICS_RTOL = 1e-5

CONFIGS = list(bench.CONFIGS)


def _finite_positive(x: object) -> bool:
  return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


@pytest.fixture(scope='module')
def results() -> dict:
  # Smaller than --quick: two trees, a short compile sweep, no torch.
  return bench.run(
    quick=True,
    trees=['one_leaf', 'cnn'],
    leaf_counts=[2, 4],
    repeats=2,
    with_torch=False,
  )


@pytest.mark.slow
def test_schema(results: dict) -> None:
  assert set(results) == {'meta', 'bandwidth', 'steps', 'summary', 'compile'}
  sm = results['summary']
  assert sm['rows'] == len(results['steps'])
  assert 0 <= sm['rows_ours_at_most_optax'] <= sm['rows']
  lo, hi = sm['range_ours_over_optax']
  assert 0 < lo <= sm['geomean_ours_over_optax'] <= hi
  lo, hi = sm['range_aa_control']
  assert 0 < lo <= sm['geomean_aa_control'] <= hi
  assert results['meta']['quick'] is True
  assert _finite_positive(results['bandwidth']['gb_per_s'])
  assert _finite_positive(results['bandwidth']['copy_gb_per_s'])
  assert len(results['steps']) == 2 * len(CONFIGS)
  for row in results['steps']:
    assert row['config'] in CONFIGS
    for who in ('ours', 'optax'):
      assert _finite_positive(row['seconds'][who])
    assert _finite_positive(row['ratio_ours_over']['optax'])
    assert row['samples'] == 2
    # The ratio's quartiles and the A/A control (optax against a second optax).
    for band in (row['ratio_spread']['optax'], row['aa_control']):
      assert 0 < band['p25'] <= band['median'] <= band['p75'] < math.inf
    assert row['ratio_spread']['optax']['median'] == row['ratio_ours_over']['optax']
    # XLA's traffic and kernel count for the compiled steps: ours does the same
    # per-element work as optax (plus one scalar kernel for the step count).
    xb = row['xla_bytes_accessed']
    assert xb['ours'] >= row['bytes_moved']
    assert abs(xb['ours'] - xb['optax']) <= 64 * row['n_leaves']
    assert row['kernels']['optax'] <= row['kernels']['ours'] <= row['kernels']['optax'] + 1
    assert _finite_positive(row['xla_traffic_fraction'])
    assert _finite_positive(row['floor_seconds'])
    assert _finite_positive(row['probe_gb_per_s'])
    assert _finite_positive(row['floor_fraction'])
    assert row['bytes_moved'] > row['memory']['params_grads_state_bytes'] > 0
    for who in ('ours', 'optax'):
      mem = row['memory'][who]
      if mem is not None:
        assert _finite_positive(mem['peak_over_min'])
  sweep = results['compile']
  assert [r['n_leaves'] for r in sweep['rows']] == [2, 4]
  for r in sweep['rows']:
    assert _finite_positive(r['ratio_ours_over_optax'])
    assert _finite_positive(r['ratio_floor_over_optax'])
    for who in ('ours', 'optax', 'floor'):
      assert all(_finite_positive(r[who][k]) for k in ('trace', 'lower', 'compile', 'total'))
  assert set(sweep['seconds_per_leaf']) == {'ours', 'optax', 'floor'}


@pytest.mark.slow
def test_json_and_table_round_trip(results: dict, tmp_path) -> None:
  path = tmp_path / 'bench.json'
  path.write_text(json.dumps(results))
  assert json.loads(path.read_text())['steps'][0]['config'] == CONFIGS[0]
  table = bench.format_table(results)
  assert table.count('| one_leaf |') == len(CONFIGS)
  assert 'A/A' in table and 'least/optax' in table and 'geometric mean' in table


@pytest.mark.parametrize('config', CONFIGS)
def test_benchmarked_configs_match_optax(config: str) -> None:
  assert bench.check_numerics(config) <= NUMERICS_RTOL


def test_main_writes_json(tmp_path) -> None:
  path = tmp_path / 'out.json'
  rc = bench.main(
    [
      '--quick',
      '--json',
      str(path),
      '--configs',
      'plain',
      '--trees',
      'one_leaf',
      '--leaf-counts',
      '2',
      '--repeats',
      '1',
      '--no-torch',
    ]
  )
  assert rc == 0
  data = json.loads(path.read_text())
  assert [r['config'] for r in data['steps']] == ['plain']
  assert data['compile']['seconds_per_leaf'] == {}


def test_one_leaf_elements_sets_the_size(tmp_path) -> None:
  path = tmp_path / 'out.json'
  argv = ['--quick', '--json', str(path), '--configs', 'plain', '--trees', 'one_leaf']
  argv += ['--leaf-counts', '2', '--repeats', '1', '--no-torch', '--one-leaf-elements', '1000']
  assert bench.main(argv) == 0
  row = json.loads(path.read_text())['steps'][0]
  assert row['n_params'] == 1000
  # plain: read p, g, nu and the int32 count; write p, nu and the count.
  assert row['bytes_moved'] == 5 * 4 * 1000 + 2 * 4


@pytest.mark.parametrize('bad', [['--one-leaf-elements', '0'], ['--repeats', '0']])
def test_main_rejects_nonpositive_sizes(bad: list[str], capsys) -> None:
  with pytest.raises(SystemExit) as e:
    bench.main(['--quick', *bad])
  assert e.value.code == 2
  assert 'must be >= 1' in capsys.readouterr().err


def test_kernel_count_reads_the_entry_computation() -> None:
  # Two independent outputs need two kernels on any backend.
  import jax
  import jax.numpy as jnp

  x = jnp.ones((128,), jnp.float32)
  compiled = jax.jit(lambda a: (a + 1.0, a * 3.0)).lower(x).compile()
  assert bench._kernel_count(compiled) in (1, 2)  # one if the backend fuses multi-output
  assert bench._xla_bytes_accessed(compiled) >= 3 * 4 * 128


def test_sample_orders_are_balanced() -> None:
  # Over six samples every runner takes every position twice and comes right
  # after each other runner equally often: no order effect favours one side.
  orders = [bench._ORDERS[r % len(bench._ORDERS)] for r in range(6)]
  names = ('ours', 'optax', 'control')
  for k in names:
    assert sorted(o.index(k) for o in orders) == [0, 0, 1, 1, 2, 2]
  follows = {(a, b): 0 for a in names for b in names if a != b}
  for o in orders:
    for a, b in zip(o, o[1:]):
      follows[a, b] += 1
  assert set(follows.values()) == {2}


def test_torch_runs_on_the_device_jax_runs_on() -> None:
  class _NoCuda:
    class cuda:  # noqa: N801 - mimics torch.cuda
      @staticmethod
      def is_available() -> bool:
        return False

  # These tests run on CPU: torch runs on the CPU too. (On a GPU backend
  # without CUDA torch, torch is skipped rather than timed on another device.)
  import jax

  assert jax.default_backend() == 'cpu'
  assert bench.torch_device(_NoCuda) == 'cpu'
