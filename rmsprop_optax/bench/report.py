"""The results as text: the progress line of each row and the Markdown tables."""

from __future__ import annotations

from typing import Any

from rmsprop_optax.bench import training_step


def _units(r: dict[str, Any], who: str) -> str:
  """XLA's traffic for ``who`` in units of one param array (e.g. 7.0 = 7N)."""
  xb = r['xla_bytes_accessed'][who]
  return 'n/a' if xb is None else f'{xb / (4 * r["n_params"]):.1f}N'


def format_step(r: dict[str, Any]) -> str:
  s = r['seconds']
  sp = r['ratio_spread']['optax']
  aa = r['aa_control']
  torch_part = (
    f'  torch {1e3 * s["torch"]:7.2f} ms ({r["ratio_ours_over"]["torch"]:.2f})'
    if 'torch' in s
    else ''
  )
  mem = r['memory']['ours']
  mem_part = '' if mem is None else f'  mem {mem["peak_over_min"]:.3f}x'
  xla_part = (
    f' ({100 * r["xla_traffic_fraction"]:.0f}% of XLA traffic {_units(r, "ours")})'
    if 'xla_traffic_fraction' in r
    else ''
  )
  q_part = (
    f'  float32-state {1e3 * s["float32_state"]:7.2f} ms ({r["ratio_ours_over"]["float32_state"]:.2f})'
    f'  state {r["state_ratio_vs_float32"]:.3f}x'
    if 'float32_state' in s
    else ''
  )
  return (
    f'{r["config"]:<20} {r["tree"]:<11} ours {1e3 * s["ours"]:7.2f} ms  optax {1e3 * s["optax"]:7.2f} ms '
    f'{r["ratio_ours_over"]["optax"]:.2f} [{sp["p25"]:.2f}-{sp["p75"]:.2f}] '
    f'A/A {aa["median"]:.2f} [{aa["p25"]:.2f}-{aa["p75"]:.2f}]{torch_part}{q_part}'
    f'  floor {100 * r["floor_fraction"]:4.0f}%{xla_part}{mem_part}'
  )


# Printed under the quantized tables.
QUANTIZED_NOTE = (
  'why the quantized step is slower on XLA:CPU although it moves fewer bytes: it is not '
  'memory-bound. Each requantized moment needs a block absmax (a reduction, then a second pass '
  'to normalize) and a code lookup (a table indexed by the float bits, then a compare), and '
  'dequantizing needs a code-map gather and a per-element block scale; gathers do not vectorize '
  'well. The step runs these over chunks of the leading axes in a loop that writes codes, '
  "scales and output in place, so its temporaries are a chunk's, not the moments' (the training-step table: "
  'temp and peak per device). With the gradients as an argument the updates need a '
  'buffer of their own (XLA cannot write them over an input that no output aliases); with '
  'momentum, a second one between the two chunked loops. The "where the time goes" line times '
  'each part alone against the float32 step. On a GPU, where XLA fuses elementwise loops and '
  'multiple outputs into few kernels, the step can be closer to memory-bound (not measured '
  'here). Alternatives measured once and not re-run here (2-core x86 CPU, jax 0.10.2): the '
  'per-element block scale as jnp.repeat (a gather with per-element indices) took about 6x the '
  'broadcast; jnp.searchsorted with method compare_all or sort was slower than scan (both scan '
  'variants are timed above). Profiled once (jax.profiler, plain 8-bit step on 2**24 elements, '
  'one step about 80 ms): the codes kernel (it recomputes the new moment, normalizes, looks up '
  'and writes the codes) 24 ms, the code-map gather 11 ms, the output kernel 10 ms, the copy '
  'of the undonated gradient 8 ms, reading the gradient 6 ms, the block absmax 4.5 ms (and '
  '4 ms to write its input), apply_updates 4 ms. Pinned to one core (taskset -c 0) the 8-bit '
  'step took 1.28x its two-core time and the float32 step 1.33x, so the chunked loop uses the '
  'second core about as well as the whole-array step does. Larger chunks were slower (2**20 '
  'elements: 1.3x the time of 2**17), and XLA_FLAGS '
  '--xla_cpu_enable_concurrency_optimized_scheduler or --xla_cpu_parallel_codegen_split_count '
  "changed nothing beyond noise. The float map (q8f rows, quantized(8, map='float')) reads and "
  'rounds its codes with shifts and adds instead of the lookups; profiled once (same step, '
  'about 55 ms): the codes kernel 8.6 ms, the output kernel 8.2 ms, the copy of the undonated '
  'gradient 10.8 ms, reading the gradient 5.9 ms, apply_updates 4.2 ms, the block absmax 3.4 ms '
  '(and 2.9 ms to write its input), reading the codes and their values 7.4 ms.'
)

# Printed at the end: how to read the figures on XLA:CPU. What this run measures is in the
# tables above; the alternatives tried and rejected are not re-run, so their figures are given.
READING_NOTES = (
  'reading the figures on XLA:CPU:',
  "* step time: the compiled step does exactly optax.rmsprop's per-element work (same fused "
  'kernels, same XLA traffic); the one addition is a scalar kernel for the int32 step count kept '
  'in the state (with bias correction optax counts too and the kernels are equal). Rows a few '
  'percent above 1.00 are within the A/A band: two identical programs, each owning its buffers, '
  'differ by that much on a shared machine.',
  '* floor reached: XLA:CPU does no multi-output fusion, so each output array (params, nu, mu, '
  'momentum) is its own kernel that rereads the gradient and the moments. The plain step moves 7N '
  'instead of the 5N it must, which caps it at 5/7 = 71% of the floor (momentum: 7N of 10N, 70%; centered '
  '+ momentum: 9N of 14N, 64%); against its own XLA traffic it runs at memory speed. Tried and rejected '
  '(jaxlib 0.10.2): the flag --xla_cpu_use_multi_output_fusion (unknown to jaxlib, and a library '
  "cannot set XLA flags for its user's jit); a hand-blocked in-place fori_loop over 16K-256K-"
  'element chunks (bit-identical and copy-free, but 2-3x slower; quantized state does use '
  "one, where it bounds the step's memory). On a GPU XLA fuses "
  'multiple outputs.',
  "* compile time: XLA's compile is most of the total, about one LLVM kernel per output array; "
  'the least program (least/optax) shows how little of it any step that keeps one state array '
  'per param leaf (which sharding and checkpoints need) can save. Grouping all leaves with '
  'optax.flatten(rmsprop(...)) was measured once and rejected (2-core x86 CPU, 500 leaves): a '
  '500-operand concatenate and 500 slices compiled 1.5x slower than optax, its step took '
  '0.65-6.9x ours and it needed 1.2-1.7x the peak memory. If compile time matters, stack '
  'repeated layers (flax.linen.scan, nnx.vmap, a leading layer axis): the state follows the tree. '
  'With quantized state (the 8-bit rows), leaves of one chunk (2**17 elements) or less are joined '
  'and stepped together in a one-device process, a few kernels in all instead of about two dozen '
  'per leaf; a larger leaf compiles its own chunk loop.',
  '* peak memory: params + grads + state (donated) is the least a step can hold; a ratio of 1.000 '
  'means the step has no full-size temporaries.',
)


def _mb(x: int) -> str:
  return f'{x / 2**20:.1f}'


def _format_quantized(results: dict[str, Any]) -> list[str]:
  qs = results.get('quantized_state', {})
  lines: list[str] = []
  if qs.get('state_bytes'):
    lines += [
      '',
      'state bytes (sum of size * itemsize over jax.eval_shape(opt.init, params)); '
      'leaves under 4096 elements keep float32 state',
      '',
      '| tree | settings | params | float32 state MB | 8-bit MB | 4-bit MB | 8-bit / float32 '
      '| 4-bit / float32 |',
      '|---|---|---:|---:|---:|---:|---:|---:|',
    ]
    for b in qs['state_bytes']:
      lines.append(
        f'| {b["tree"]} | {b["settings"]} | {b["n_params"]:,} | {_mb(b["float32"])} | {_mb(b["q8"])} '
        f'| {_mb(b["q4"])} | {b["q8_over_float32"]:.3f} | {b["q4_over_float32"]:.3f} |'
      )
  rows = [r for r in results['steps'] if r.get('state', 'float32') != 'float32']
  if rows:
    lines += [
      '',
      'quantized state: ours with accumulator_dtype=quantized(bits) against ours with float32 state '
      'and optax.rmsprop (same settings), all in one interleaved rotation with the A/A control; '
      'the step takes the gradients as an argument, so its peak holds them and, for the quantized '
      'step, a buffer for the updates (the training-step table below computes them in the step)',
      '',
      '| config | tree | state / float32 state | peak mem MB q / float32 / optax | q ms '
      '| float32-state ms | optax ms | q / float32-state [quartiles] | q / optax [quartiles] '
      '| A/A | XLA traffic q / float32 | XLA traffic reached | entry ops q / float32 |',
      '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ]
    for r in rows:
      s, m, k = r['seconds'], r['memory'], r['kernels']
      mems = [m.get(w) for w in ('ours', 'float32_state', 'optax')]
      mem = 'n/a' if None in mems else ' / '.join(_mb(x['peak_bytes']) for x in mems if x)
      sf, so, aa = r['ratio_spread']['float32_state'], r['ratio_spread']['optax'], r['aa_control']
      xt = f'{100 * r["xla_traffic_fraction"]:.0f}%' if 'xla_traffic_fraction' in r else 'n/a'
      lines.append(
        f'| {r["config"]} | {r["tree"]} | {r["state_ratio_vs_float32"]:.3f} | {mem} '
        f'| {1e3 * s["ours"]:.2f} | {1e3 * s["float32_state"]:.2f} | {1e3 * s["optax"]:.2f} '
        f'| {sf["median"]:.2f} [{sf["p25"]:.2f}, {sf["p75"]:.2f}] '
        f'| {so["median"]:.2f} [{so["p25"]:.2f}, {so["p75"]:.2f}] | {aa["median"]:.2f} '
        f'| {_units(r, "ours")} / {_units(r, "float32_state")} | {xt} '
        f'| {k["ours"]} / {k["float32_state"]} |'
      )
  cost = qs.get('quantize_cost')
  if cost:
    sec, rel = cost['seconds'], cost['over_float32_step']
    parts = ', '.join(
      f'{k} {1e3 * sec[k]:.2f} ms ({rel[k]:.1f}x)' for k in sec if k != 'float32_step'
    )
    lines += [
      '',
      f'where the time goes, one leaf of {cost["elements"]:,} elements, each part jitted alone '
      f'(x the float32 plain step, {1e3 * sec["float32_step"]:.2f} ms): {parts}',
    ]
  if qs.get('training_step'):
    lines += training_step.format_rows(qs['training_step'])
  if rows or cost:
    lines += ['', QUANTIZED_NOTE]
  return lines


def format_table(results: dict[str, Any]) -> str:
  """The results as Markdown tables."""
  meta, bw = results['meta'], results['bandwidth']
  lines = [
    f'{meta["cpu"]}, {meta["cores"]} cores, {meta["backend"]}; '
    f'jax {meta["jax"]}, optax {meta["optax"]}, torch {meta["torch"]}; {meta["date"]}',
    f'bandwidth probe: {bw["gb_per_s"]:.2f} GB/s ({bw["probe"]}); '
    f'copy {bw["copy_gb_per_s"]:.2f} GB/s (a + 1, 1 read + 1 write)',
    'ratios: median [quartiles] of interleaved t_ours / t_other (< 1.00: ours faster); '
    'A/A: a second optax.rmsprop against the first, timed in the same rotation (the noise band)',
    'floor: bytes the step must move (N = one param array: plain 5N) over the probe bandwidth; '
    "XLA traffic: bytes the compiled step reads and writes by XLA's cost model",
    '',
    '| config | tree | leaves | params | ours ms | optax ms | ours/optax [quartiles] | A/A [quartiles] '
    '| torch ms | ours/torch | entry ops ours / optax | XLA traffic ours / optax | floor ms '
    '| floor reached | XLA traffic reached | peak mem ours / optax (x params+grads+state) |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ]
  for r in results['steps']:
    if r.get('state', 'float32') != 'float32':
      continue  # in the quantized table below
    s = r['seconds']
    t = f'{1e3 * s["torch"]:.2f}' if 'torch' in s else 'n/a'
    tr = f'{r["ratio_ours_over"]["torch"]:.2f}' if 'torch' in s else 'n/a'
    mo, mp = r['memory']['ours'], r['memory']['optax']
    mem = (
      'n/a'
      if mo is None or mp is None
      else f'{mo["peak_over_min"]:.3f} / {mp["peak_over_min"]:.3f}'
    )
    sp, aa = r['ratio_spread']['optax'], r['aa_control']
    k = r['kernels']
    xt = f'{100 * r["xla_traffic_fraction"]:.0f}%' if 'xla_traffic_fraction' in r else 'n/a'
    lines.append(
      f'| {r["config"]} | {r["tree"]} | {r["n_leaves"]} | {r["n_params"]:,} | {1e3 * s["ours"]:.2f} '
      f'| {1e3 * s["optax"]:.2f} | {r["ratio_ours_over"]["optax"]:.2f} [{sp["p25"]:.2f}, {sp["p75"]:.2f}] '
      f'| {aa["median"]:.2f} [{aa["p25"]:.2f}, {aa["p75"]:.2f}] | {t} | {tr} '
      f'| {k["ours"]} / {k["optax"]} | {_units(r, "ours")} / {_units(r, "optax")} '
      f'| {1e3 * r["floor_seconds"]:.2f} | {100 * r["floor_fraction"]:.0f}% | {xt} | {mem} |'
    )
  sm = results['summary']
  if sm['rows']:
    lines += [
      '',
      f'ours/optax over {sm["rows"]} rows: geometric mean {sm["geomean_ours_over_optax"]:.3f} '
      f'(medians {sm["range_ours_over_optax"][0]:.2f} to {sm["range_ours_over_optax"][1]:.2f}, '
      f'{sm["rows_ours_at_most_optax"]} of {sm["rows"]} <= 1.00); '
      f'A/A control: geometric mean {sm["geomean_aa_control"]:.3f} '
      f'(medians {sm["range_aa_control"][0]:.2f} to {sm["range_aa_control"][1]:.2f})',
    ]
  lines += _format_quantized(results)
  c = results['compile']
  lines += [
    '',
    f'compile time, {c["config"]}, leaves of {tuple(c["leaf_shape"])} float32 (seconds: trace + lower + XLA); '
    'least: one trivial kernel per output array of the step (params and state); '
    'on XLA:CPU about the least any per-leaf-state step can compile to',
    '',
    '| leaves | ours trace | ours lower | ours XLA | ours total | optax trace | optax lower '
    '| optax XLA | optax total | least total | ours/optax | least/optax |',
    '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ]
  for row in c['rows']:
    o, p, f = row['ours'], row['optax'], row['floor']
    lines.append(
      f'| {row["n_leaves"]} | {o["trace"]:.2f} | {o["lower"]:.2f} | {o["compile"]:.2f} | {o["total"]:.2f} '
      f'| {p["trace"]:.2f} | {p["lower"]:.2f} | {p["compile"]:.2f} | {p["total"]:.2f} '
      f'| {f["total"]:.2f} | {row["ratio_ours_over_optax"]:.2f} | {row["ratio_floor_over_optax"]:.2f} |'
    )
  if c['rows'] and 'distinct_q8' in c['rows'][0]:
    lines += [
      '',
      f'compile time, {c["config"]}, 8-bit against float32 state, leaves of distinct shapes '
      f'{c["distinct_leaf_shapes"]} float32 (seconds: trace + lower + XLA)',
      '',
      '| leaves | 8-bit trace | 8-bit lower | 8-bit XLA | 8-bit total | float32 total '
      '| 8-bit/float32 |',
      '|---:|---:|---:|---:|---:|---:|---:|',
    ]
    for row in c['rows']:
      q, f = row['distinct_q8'], row['distinct_f32']
      lines.append(
        f'| {row["n_leaves"]} | {q["trace"]:.2f} | {q["lower"]:.2f} | {q["compile"]:.2f} '
        f'| {q["total"]:.2f} | {f["total"]:.2f} | {row["ratio_q8_over_f32"]:.2f} |'
      )
  if c['seconds_per_leaf']:
    sl = c['seconds_per_leaf']
    lines.append('')
    lines.append(
      f'growth per added leaf: ours {1e3 * sl["ours"]:.2f} ms, optax {1e3 * sl["optax"]:.2f} ms, '
      f'least {1e3 * sl["floor"]:.2f} ms'
    )
  lines += ['', *READING_NOTES]
  return '\n'.join(lines)
