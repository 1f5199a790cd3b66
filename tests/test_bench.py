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
from rmsprop_optax.bench import report, timing, xla_cost

# ours vs optax.rmsprop in float32 after 3 steps; the PyTorch preset puts lr
# outside the momentum buffer (optax inside), equal up to rounding.
NUMERICS_RTOL = 1e-5

CONFIGS = list(bench.CONFIGS)
FLOAT_CONFIGS = [c for c in CONFIGS if c not in bench.QUANTIZED]
QUANTIZED_CONFIGS = list(bench.QUANTIZED)
# Quantized state against optax after 3 steps: max |p_ours - p_optax| over the
# largest param change (the stored moments are rounded; 4-bit codes span only a few decades).
# The float map ends at 2**-18 of a block's largest nu (the dynamic map at 0.55e-7): an element
# whose gradient is under about 2**-9 of its block's largest reads nu there and steps short. The
# worst element of the check's leaf (gradient 7e-4 of its row's largest) moved 0.05-0.10 of the
# largest step off optax's; the 99.9th percentile 0.004 (dynamic map: 0.014 and 0.005).
QUANTIZED_UPDATE_RTOL = {'q8': 0.05, 'q8f': 0.15, 'q4': 0.5}


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
  assert set(results) == {'meta', 'bandwidth', 'steps', 'summary', 'quantized_state', 'compile'}
  sm = results['summary']
  # The headline summary is over the float32-state rows; quantized rows apart.
  assert sm['rows'] == 2 * len(FLOAT_CONFIGS)
  assert sm['quantized']['rows'] == len(QUANTIZED_CONFIGS)
  assert _finite_positive(sm['quantized']['geomean_over_float32_state'])
  assert _finite_positive(sm['quantized']['geomean_over_optax'])
  assert 0 <= sm['rows_ours_at_most_optax'] <= sm['rows']
  lo, hi = sm['range_ours_over_optax']
  assert 0 < lo <= sm['geomean_ours_over_optax'] <= hi
  lo, hi = sm['range_aa_control']
  assert 0 < lo <= sm['geomean_aa_control'] <= hi
  assert results['meta']['quick'] is True
  assert _finite_positive(results['bandwidth']['gb_per_s'])
  assert _finite_positive(results['bandwidth']['copy_gb_per_s'])
  # --quick: quantized rows on the one-leaf tree only (the cnn is skipped).
  assert len(results['steps']) == 2 * len(FLOAT_CONFIGS) + len(QUANTIZED_CONFIGS)
  assert {(r['config'], r['tree']) for r in results['quantized_state']['skipped']} == {
    (c, 'cnn') for c in QUANTIZED_CONFIGS
  }
  for row in results['steps']:
    assert row['config'] in CONFIGS
    assert row['state'] == bench.state_label(row['config'])
    assert row['state_bytes']['ours'] > 0 and row['state_bytes']['optax'] > 0
    if row['config'] in bench.QUANTIZED:
      _check_quantized_row(row)
      continue
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
  _check_quantized_state(results['quantized_state'])
  sweep = results['compile']
  assert [r['n_leaves'] for r in sweep['rows']] == [2, 4]
  for r in sweep['rows']:
    assert _finite_positive(r['ratio_ours_over_optax'])
    assert _finite_positive(r['ratio_floor_over_optax'])
    assert _finite_positive(r['ratio_q8_over_f32'])
    for who in ('ours', 'optax', 'floor', 'distinct_q8', 'distinct_f32'):
      assert all(_finite_positive(r[who][k]) for k in ('trace', 'lower', 'compile', 'total'))
  assert set(sweep['seconds_per_leaf']) == {'ours', 'optax', 'floor'}


def _check_quantized_row(row: dict) -> None:
  # Ours with quantized state, against ours with float32 state and optax.
  assert row['tree'] == 'one_leaf'
  assert row['float32_config'] == bench.QUANTIZED[row['config']][0]
  for who in ('ours', 'optax', 'float32_state'):
    assert _finite_positive(row['seconds'][who])
  for who in ('optax', 'float32_state'):
    assert _finite_positive(row['ratio_ours_over'][who])
    band = row['ratio_spread'][who]
    assert 0 < band['p25'] <= band['median'] <= band['p75'] < math.inf
    assert band['median'] == row['ratio_ours_over'][who]
  assert 'torch' not in row['seconds']
  assert _finite_positive(row['iters_per_sample_ours'])
  # About 1 byte (4 bits: half a byte) + 4 / block_size per element, plus the step count.
  goal = {'q8': 0.27, 'q8f': 0.27, 'q4': 0.14}[row['state']]
  assert row['state_ratio_vs_float32'] <= goal
  assert (
    row['state_ratio_vs_float32']
    == row['state_bytes']['ours'] / row['state_bytes']['float32_state']
  )
  assert row['state_bytes']['float32_state'] == row['state_bytes']['optax'] + 4  # the int32 count
  xb, k = row['xla_bytes_accessed'], row['kernels']
  assert xb['ours'] >= row['bytes_moved']
  assert abs(xb['float32_state'] - xb['optax']) <= 64 * row['n_leaves']
  assert k['optax'] <= k['float32_state'] <= k['optax'] + 1
  assert _finite_positive(row['xla_traffic_fraction'])
  assert row['max_rel_diff_vs_optax'] <= QUANTIZED_UPDATE_RTOL[row['state']]
  for who in ('ours', 'optax', 'float32_state'):
    mem = row['memory'][who]
    if mem is not None:
      assert _finite_positive(mem['peak_over_min'])


def _check_quantized_state(qs: dict) -> None:
  # State bytes from jax.eval_shape for each tree, float32 against 8 and 4 bits.
  table = {(b['tree'], b['settings']): b for b in qs['state_bytes']}
  assert set(table) == {(t, s) for t in ('one_leaf', 'cnn') for s in ('plain', 'centered_momentum')}
  for b in table.values():
    assert b['q4'] <= b['q8'] <= b['float32']
    assert b['q8_over_float32'] == b['q8'] / b['float32']
  assert table['one_leaf', 'plain']['q8_over_float32'] <= 0.27
  assert table['one_leaf', 'plain']['q4_over_float32'] <= 0.14
  # The --quick cnn's leaves are all under min_size: float32 state throughout.
  assert table['cnn', 'plain']['q8'] == table['cnn', 'plain']['float32']
  cost = qs['quantize_cost']
  assert cost['elements'] == 1 << 18
  parts = {'float32_step', 'q8_step', 'quantize', 'code_lookup', 'code_lookup_scan_unrolled'}
  parts |= {'code_lookup_scan'}
  parts |= {'dequantize', 'code_map_gather', 'scale_broadcast'}
  assert set(cost['seconds']) == parts
  assert all(_finite_positive(v) for v in cost['seconds'].values())
  assert cost['over_float32_step']['float32_step'] == 1.0


@pytest.mark.slow
def test_json_and_table_round_trip(results: dict, tmp_path) -> None:
  path = tmp_path / 'bench.json'
  path.write_text(json.dumps(results))
  assert json.loads(path.read_text())['steps'][0]['config'] == CONFIGS[0]
  table = bench.format_table(results)
  # Float32 rows, quantized rows and the two state-bytes rows of the tree.
  assert table.count('| one_leaf |') == len(CONFIGS) + 2
  assert 'A/A' in table and 'least/optax' in table and 'geometric mean' in table
  assert '8-bit/float32 |' in table  # the compile sweep's quantized rows
  assert 'q / float32-state' in table and 'where the time goes' in table
  assert bench.QUANTIZED_NOTE in table
  assert all(note in table for note in report.READING_NOTES)


@pytest.mark.parametrize('config', FLOAT_CONFIGS)
def test_benchmarked_configs_match_optax(config: str) -> None:
  assert bench.check_numerics(config) <= NUMERICS_RTOL


@pytest.mark.parametrize('config', QUANTIZED_CONFIGS)
def test_quantized_configs_step_like_optax(config: str) -> None:
  assert bench.check_numerics(config) <= QUANTIZED_UPDATE_RTOL[bench.state_label(config)]


def test_state_bytes_come_from_eval_shape() -> None:
  import jax
  import jax.numpy as jnp

  from rmsprop_optax import quantized, rmsprop

  params = {'w': jax.ShapeDtypeStruct((64, 256), jnp.float32)}
  n = 64 * 256
  assert bench.state_bytes(rmsprop(1e-3), params) == 4 * n + 4
  # One code byte per element and one float32 scale per block of 256 (4 bits: 128).
  assert bench.state_bytes(rmsprop(1e-3, accumulator_dtype=quantized(8)), params) == n + 4 * 64 + 4
  q4 = bench.state_bytes(rmsprop(1e-3, accumulator_dtype=quantized(4)), params)
  assert q4 == n // 2 + 4 * 64 * 2 + 4


@pytest.mark.parametrize('bits', [8, 4])
@pytest.mark.parametrize('signed', [False, True])
def test_code_lookup_method_gives_the_default_codes(bits: int, signed: bool) -> None:
  # The searchsorted methods the bench compares give the same codes as the
  # default 'scan' and NumPy; so does quantize()'s own bucket-table lookup.
  import jax.numpy as jnp
  import numpy as np

  from rmsprop_optax import _quantize

  table = _quantize.code_map(bits, signed, unsigned_zero=True)
  midpoints = (table[1:] + table[:-1]) / 2
  rng = np.random.default_rng(0)
  x = rng.uniform(-1 if signed else 0, 1, 20000).astype(np.float32)
  edges = [0.0, 1.0, 1e-7, 1e-30, np.nextafter(np.float32(1), np.float32(0))]
  edges += [-v for v in edges] if signed else []
  # Every midpoint (a tie) and its float32 neighbours, every code value.
  below = np.nextafter(midpoints, np.float32(-2))
  above = np.nextafter(midpoints, np.float32(2))
  x = np.concatenate([x, np.float32(edges), midpoints, below, above, table]).astype(np.float32)
  if not signed:
    x = x[x >= 0]
  m = jnp.asarray(midpoints)
  default = np.asarray(jnp.searchsorted(m, jnp.asarray(x)))
  unrolled = np.asarray(jnp.searchsorted(m, jnp.asarray(x), method='scan_unrolled'))
  np.testing.assert_array_equal(unrolled, default)
  np.testing.assert_array_equal(default, np.searchsorted(midpoints, x, side='left'))
  # quantize() itself, on a block whose absmax is 1 (normalized values are x).
  x1 = np.concatenate([x, np.ones(2 - x.size % 2, np.float32)])  # even, absmax 1
  q = _quantize.quantize(
    jnp.asarray(x1), bits=bits, block_size=x1.size, signed=signed, unsigned_zero=True
  )
  codes = np.asarray(q.codes)
  if bits == 4:
    codes = np.stack([codes & 15, codes >> 4], axis=-1).reshape(-1)
  np.testing.assert_array_equal(codes, np.searchsorted(midpoints, x1, side='left'))


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
  assert row['state'] == 'float32' and 'float32_state' not in row['seconds']


def test_main_times_one_quantized_row(tmp_path) -> None:
  path = tmp_path / 'out.json'
  argv = ['--quick', '--json', str(path), '--configs', 'plain_q8', '--trees', 'one_leaf']
  argv += ['--leaf-counts', '2', '--repeats', '1', '--no-torch', '--one-leaf-elements', '8192']
  assert bench.main(argv) == 0
  data = json.loads(path.read_text())
  (row,) = data['steps']
  assert (row['config'], row['state'], row['float32_config']) == ('plain_q8', 'q8', 'plain')
  # 8192 codes + 32 block scales + the count, against 8192 float32 + the count.
  assert row['state_bytes'] == {
    'ours': 8192 + 4 * 32 + 4,
    'optax': 4 * 8192,
    'float32_state': 4 * 8192 + 4,
  }
  assert data['summary']['rows'] == 0 and data['summary']['quantized']['rows'] == 1
  assert data['quantized_state']['quantize_cost']['elements'] == 8192


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
  assert xla_cost.kernel_count(compiled) in (1, 2)  # one if the backend fuses multi-output
  assert xla_cost.xla_bytes_accessed(compiled) >= 3 * 4 * 128


def test_sample_orders_are_balanced() -> None:
  # Over six samples every runner takes every position twice and comes right
  # after each other runner equally often: no order effect favours one side.
  orders = [timing.ORDERS[r % len(timing.ORDERS)] for r in range(6)]
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


@pytest.mark.slow
def test_training_step_table(results: dict) -> None:
  from rmsprop_optax.bench import configs, training_step

  rows = results['quantized_state']['training_step']
  tree = configs.transformer_tree(quick=True)
  leaf, tree_label = '2048x2048', f'transformer ({len(tree)} leaves)'
  assert [(r['devices'], r['layout'], r['settings'], r['params']) for r in rows] == [
    (1, 'one device', 'plain', leaf),
    (1, 'one device', 'centered_momentum', leaf),
    (1, 'one device', 'plain', tree_label),
    (1, 'one device', 'centered_momentum', tree_label),
    (8, 'rows', 'plain', leaf),
    (8, 'rows', 'centered_momentum', leaf),
    (8, 'columns', 'plain', leaf),
    (8, 'columns', 'centered_momentum', leaf),
  ]
  assert rows[2]['elements'] == sum(math.prod(s) for s in tree.values())
  for r in rows:
    f32, q8 = r['float32'], r['q8']
    moments = 1 if r['settings'] == 'plain' else 3
    assert r['q8f']['state_bytes'] == q8['state_bytes'] < f32['state_bytes'] / 2, r
    # Sharded over rows, the gradient is summed over the devices' rows (one
    # collective); the quantized step adds none.
    assert q8['collectives'] == f32['collectives'] == r['q8f']['collectives']
    assert f32['collectives'] == (1 if r['layout'] == 'rows' else 0)
    assert min(r['seconds'].values()) > 0 and r['q8f_over_float32_time'] > 0
    if r['params'] != leaf:
      continue
    n = r['elements'] // r['devices']  # per device
    assert f32['state_bytes'] == 4 * moments * n + 4
    assert q8['state_bytes'] == moments * (n + 4 * n // 256) + 4  # codes and a scale per block
    assert r['q8_over_float32_peak'] < 0.8, r
    # The float map's step holds the dynamic map's chunk temporaries, to a few hundred bytes.
    assert abs(r['q8f']['temp_bytes'] - q8['temp_bytes']) < 4096, r
    assert r['q8f_over_float32_peak'] < 0.8, r
  lines = training_step.format_rows(rows)
  assert sum(line.startswith('| 1 | one device |') for line in lines) == 4
  assert sum(line.startswith('| 8 | ') for line in lines) == 4
  assert sum('| transformer (' in line for line in lines) == 2
