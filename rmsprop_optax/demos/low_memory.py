"""Low-memory state: RMSprop with float32, 8-bit and 4-bit state on the four applications.

Each application demo (``digits``, ``char_lstm``, ``dqn``,
``matrix_factorization``) trains its RMSprop alone (``run_rmsprop``) with the
state stored as float32, as ``quantized(8)``, as ``quantized(8, map='float')``
(the tapered floating-point code) and as ``quantized(4)``
(:func:`rmsprop_optax.quantized`: blockwise codes with one float32 scale per
block, after Dettmers et al., "8-bit Optimizers via Block-wise Quantization",
ICLR 2022, arXiv:2110.02861), for several random seeds (the seed sets the
initialisation and the data order; the three specs share them). ``nu`` is
stored with the library's default map for it, which has no code for 0 (Li,
Chen and Zhu, "Memory Efficient Optimizers with 4-bit States", NeurIPS 2023,
arXiv:2309.01507: a small ``nu`` stored as 0 makes its next step up to
``1 / sqrt(1 - decay)`` times too large).

Every leaf with a shape is quantized here (``min_size=0``, ``MIN_SIZE``): the
models are small, and the library's default (float32 state below 4,096
elements) would leave a large share of their state in float32. This is the
stricter test.

Reported per application and spec: the headline metric (digits test accuracy,
char LSTM validation perplexity, DQN greedy mean return, matrix factorisation
held-out RMSE) per seed, its mean and its seed-to-seed range (min to max), and
whether the mean lies inside float32's min-max range; the difference from
float32 paired by seed (the same initialisation and data), its mean and
standard error; the bytes of the RMSprop state (``jax.eval_shape(opt.init,
params)``, summed over leaves) and their ratio to float32 state.

Three seeds (the default) are a rough gauge of the spread; ``num_seeds``
(``--seeds`` on the command line) runs more. Over ten seeds (``python -m
rmsprop_optax demo low_memory --seeds 10``, seeds 0–9, on a 2-core AMD EPYC
virtual machine; another CPU rounds differently, so rerun it there), DQN's
greedy return with float32 state spans a factor of three, mean 186.7
(99.23–301.5), while 8-bit state's mean, 173.9 (71.69–274.8), and 4-bit
state's, 187.2 (97.94–288.4), lie inside that range; so do both means on the
other three applications (e.g. digits test accuracy: float32 0.9797
(0.975–0.9861), 8-bit 0.9797 (0.9694–0.9833), 4-bit 0.9811 (0.9778–0.9861)).
So do the float map's (DQN 205.0 (86.72–500.0), digits 0.9797
(0.9722–0.9833)); paired by seed, its matrix factorisation RMSE is
+0.00023 (SE 0.00001) above float32's, the dynamic map's +0.00037 (0.00001).
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

import rmsprop_optax
from rmsprop_optax.demos import _common, cli

NAME = 'low_memory'
APPS = ('digits', 'char_lstm', 'dqn', 'matrix_factorization')
# Fast mode (the tests): one seed, the two quickest applications.
FAST_APPS = ('digits', 'matrix_factorization')
# Seeds run by default (``--seeds N`` on the command line, ``num_seeds`` here, changes it).
NUM_SEEDS_FULL = 3
NUM_SEEDS_FAST = 1
MIN_SIZE = 0  # quantize every leaf with a shape (see the module docstring)
SPECS: dict[str, rmsprop_optax.Quantized | None] = {
  'float32 state': None,
  '8-bit state': rmsprop_optax.quantized(8, min_size=MIN_SIZE),
  '8-bit float state': rmsprop_optax.quantized(8, min_size=MIN_SIZE, map='float'),
  '4-bit state': rmsprop_optax.quantized(4, min_size=MIN_SIZE),
}
HIGHER_IS_BETTER = {
  'test_accuracy': True,
  'val_perplexity': False,
  'greedy_mean_return': True,
  'test_rmse': False,
}
LABELS = {
  'digits': 'digits CNN: test accuracy',
  'char_lstm': 'char LSTM: validation perplexity',
  'dqn': 'DQN (CartPole): greedy mean return',
  'matrix_factorization': 'matrix factorisation: held-out RMSE',
}
# What each application's curve shows (the LSTM's is training perplexity, its table validation).
CURVE_LABELS = {
  'digits': 'test accuracy after each epoch',
  'char_lstm': 'training perplexity',
  'dqn': 'greedy return (32 episodes)',
  'matrix_factorization': 'held-out RMSE',
}


def tree_bytes(tree: Any) -> int:
  """Bytes of a pytree of arrays (or ``ShapeDtypeStruct``): ``sum(size * itemsize)``."""
  return sum(math.prod(x.shape) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree))


def state_bytes(opt: Any, params: Any) -> int:
  """Bytes of ``opt.init(params)``, from shapes only (``jax.eval_shape``: nothing is allocated)."""
  return tree_bytes(jax.eval_shape(opt.init, params))


def quantized_leaf_bytes(opt: Any, params: Any) -> tuple[int, int]:
  """For the quantized leaves of ``opt.init(params)``: (bytes stored, bytes as float32)."""
  state = jax.eval_shape(opt.init, params)
  is_tree = lambda x: isinstance(x, rmsprop_optax.QuantizedTree)
  trees = [x for x in jax.tree.leaves(state, is_leaf=is_tree) if is_tree(x)]
  stored = sum(tree_bytes((t.codes, t.scale)) for t in trees)
  as_float32 = sum(
    4 * math.prod(s.shape)
    for t in trees
    for s, c in zip(
      jax.tree.leaves(t.shapes()), jax.tree.leaves(t.codes, is_leaf=lambda x: x is None)
    )
    if c is not None
  )
  return stored, as_float32


def gpt2_small_params() -> dict[str, jax.ShapeDtypeStruct]:
  """The parameter shapes of GPT-2 small (124M: 12 layers of width 768, 50,257 tokens).

  Shapes only (``jax.ShapeDtypeStruct``, float32), the layers stacked along a
  leading axis; for :func:`state_bytes` at a realistic size.
  """
  d, n, vocab, ctx = 768, 12, 50257, 1024
  shapes = {
    'wte': (vocab, d),
    'wpe': (ctx, d),
    'ln1_scale': (n, d),
    'ln1_bias': (n, d),
    'attn_w': (n, d, 3 * d),
    'attn_b': (n, 3 * d),
    'proj_w': (n, d, d),
    'proj_b': (n, d),
    'ln2_scale': (n, d),
    'ln2_bias': (n, d),
    'fc_w': (n, d, 4 * d),
    'fc_b': (n, 4 * d),
    'out_w': (n, 4 * d, d),
    'out_b': (n, d),
    'lnf_scale': (d,),
    'lnf_bias': (d,),
  }
  return {k: jax.ShapeDtypeStruct(v, np.float32) for k, v in shapes.items()}


def rmsprop_optimizer(app: str, spec: Any, fast: bool) -> Any:
  """The application's RMSprop (as its demo builds it) with ``accumulator_dtype=spec``."""
  module = importlib.import_module(f'rmsprop_optax.demos.{app}')
  if app == 'matrix_factorization':
    steps = module.STEPS_FAST if fast else module.STEPS_FULL
    return module.optimizers(steps, accumulator_dtype=spec)['rmsprop']
  opts = module.optimizers(accumulator_dtype=spec)
  return opts['rmsprop (dqn_nature)' if app == 'dqn' else 'rmsprop']


def summarize(values: Sequence[float]) -> dict[str, float]:
  """Mean, min and max of per-seed values."""
  v = np.asarray(values, dtype=np.float64)
  return {'mean': float(v.mean()), 'min': float(v.min()), 'max': float(v.max())}


def run_app(
  app: str,
  *,
  fast: bool = False,
  seeds: Sequence[int] = tuple(range(NUM_SEEDS_FULL)),
  progress: bool = False,
) -> dict[str, Any]:
  """One application: every spec x seed, the per-seed finals, curves and state bytes."""
  module = importlib.import_module(f'rmsprop_optax.demos.{app}')
  finals: dict[str, list[float]] = {}
  curves: dict[str, list[list[float]]] = {}
  bytes_: dict[str, int] = {}
  out: dict[str, Any] = {}
  for label, spec in SPECS.items():
    finals[label], curves[label] = [], []
    for seed in seeds:
      r = module.run_rmsprop(fast=fast, seed=seed, accumulator_dtype=spec, progress=progress)
      finals[label].append(float(r['metrics'][r['metric']]))
      curves[label].append([float(v) for v in r['curve']])
      out.update(metric=r['metric'], curve_x=list(r['curve_x']), curve_xlabel=r['curve_xlabel'])
      params = r['params']
    bytes_[label] = state_bytes(rmsprop_optimizer(app, spec, fast), params)
  out.update(finals=finals, curves=curves, state_bytes=bytes_, seeds=list(seeds))
  return out


def paired_difference(values: Sequence[float], reference: Sequence[float]) -> dict[str, float]:
  """Mean of ``values - reference`` (paired by seed) and its standard error (nan for one seed)."""
  d = np.asarray(values, dtype=np.float64) - np.asarray(reference, dtype=np.float64)
  se = float(d.std(ddof=1) / math.sqrt(d.size)) if d.size > 1 else math.nan
  return {'mean': float(d.mean()), 'se': se}


def verdicts(app_result: dict[str, Any]) -> dict[str, dict[str, Any]]:
  """Per spec: mean, min, max, and how it compares with float32 state.

  ``inside_float32_range``: whether the mean lies inside float32's min-max
  range over the seeds; ``difference``: the mean and standard error of the
  per-seed differences from float32 (:func:`paired_difference`).
  """
  reference = app_result['finals']['float32 state']
  ref = summarize(reference)
  base = app_result['state_bytes']['float32 state']
  out = {}
  for label, values in app_result['finals'].items():
    s: dict[str, Any] = dict(summarize(values))
    finite = all(math.isfinite(v) for v in values)
    # The finals are float32, the mean float64: compare with a relative slack of 1e-6.
    slack = 1e-6 * max(abs(ref['min']), abs(ref['max']))
    s['inside_float32_range'] = finite and ref['min'] - slack <= s['mean'] <= ref['max'] + slack
    s['difference'] = paired_difference(values, reference)
    s['state_bytes'] = app_result['state_bytes'][label]
    s['state_ratio'] = app_result['state_bytes'][label] / base
    out[label] = s
  return out


def _cell(s: dict[str, Any]) -> str:
  return f'{s["mean"]:.4g} ({s["min"]:.4g}-{s["max"]:.4g})'


def _difference_cell(d: dict[str, float]) -> str:
  return f'{d["mean"]:+.3g} (SE {d["se"]:.2g})'


def run(
  *,
  fast: bool = False,
  seed: int = 0,
  progress: bool = False,
  apps: Sequence[str] | None = None,
  num_seeds: int | None = None,
) -> dict[str, Any]:
  """Every application x spec x seed, for the seeds ``seed, seed + 1, ...``.

  ``num_seeds`` defaults to ``NUM_SEEDS_FULL`` (``NUM_SEEDS_FAST`` in fast
  mode). Fast mode runs ``FAST_APPS`` with the demos' fast settings.
  """
  apps = tuple(apps if apps is not None else (FAST_APPS if fast else APPS))
  seeds = _common.seed_range(seed, num_seeds, NUM_SEEDS_FAST if fast else NUM_SEEDS_FULL)
  per_app = {app: run_app(app, fast=fast, seeds=seeds, progress=progress) for app in apps}
  return assemble(per_app, fast=fast)


def assemble(per_app: dict[str, dict[str, Any]], *, fast: bool) -> dict[str, Any]:
  """The demo result from :func:`run_app`'s outputs (also for runs split across processes)."""
  summary = {app: verdicts(r) for app, r in per_app.items()}
  metrics: dict[str, dict[str, Any]] = {label: {} for label in SPECS}
  for app, per_spec in summary.items():
    n = len(per_app[app]['seeds'])
    for label, s in per_spec.items():
      metric = cli.METRIC_LABELS.get(per_app[app]['metric'], per_app[app]['metric'])
      metrics[label][f'{app}: {metric}, mean (min-max, {n} seeds)'] = _cell(s)
    for label, s in per_spec.items():
      if label != 'float32 state':
        metrics[label][f'{app}: mean inside float32 range'] = s['inside_float32_range']
        if n > 1:
          metrics[label][f'{app}: minus float32, paired by seed, mean (SE)'] = _difference_cell(
            s['difference']
          )
    for label, s in per_spec.items():
      metrics[label][f'{app}: state bytes (x float32)'] = (
        f'{s["state_bytes"]} ({s["state_ratio"]:.3f}x)'
      )
  first = next(iter(per_app.values()))
  return {
    'name': NAME,
    'fast': fast,
    'metrics': metrics,
    # Mean curve of the first application per spec (the CLI table reads the keys).
    'curves': {label: np.mean(first['curves'][label], axis=0).tolist() for label in SPECS},
    'apps': per_app,
    'summary': summary,
    'specs': {label: repr(spec) if spec else 'float32' for label, spec in SPECS.items()},
  }


SPEC_STYLE = {
  'float32 state': dict(color='#1f77b4', linestyle='-'),
  '8-bit state': dict(color='#ff7f0e', linestyle='--'),
  '8-bit float state': dict(color='#d62728', linestyle='-.'),
  '4-bit state': dict(color='#2ca02c', linestyle=':'),
}


def figure(result: dict[str, Any]) -> Any:
  """One panel per application: the mean curve per spec, min to max over seeds shaded."""
  import matplotlib.pyplot as plt

  from rmsprop_optax.demos import plotting

  apps = list(result['apps'])
  cols = min(2, len(apps))
  rows = -(-len(apps) // cols)
  fig, axes = plt.subplots(
    rows, cols, figsize=(6.0 * cols, 3.8 * rows), layout='constrained', squeeze=False
  )
  for ax, app in zip(axes.ravel(), apps, strict=False):
    r = result['apps'][app]
    x = np.asarray(r['curve_x'])
    for label, runs in r['curves'].items():
      c = np.asarray(runs, dtype=np.float64)
      s = result['summary'][app][label]
      name = f'{label} ({s["state_ratio"]:.2f}x bytes): final {s["mean"]:.4g}'
      ax.plot(x, c.mean(axis=0), label=name, linewidth=1.6, **SPEC_STYLE[label])
      ax.fill_between(x, c.min(axis=0), c.max(axis=0), alpha=0.15, color=SPEC_STYLE[label]['color'])
    if r['metric'] in ('val_perplexity', 'test_rmse'):
      ax.set_yscale('log')
    ax.set_title(f'{LABELS[app]} ({len(r["seeds"])} seeds)', fontsize='medium')
    ax.set_xlabel(r['curve_xlabel'])
    ax.set_ylabel(CURVE_LABELS[app])
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize='small', framealpha=0.9)
  for ax in axes.ravel()[len(apps) :]:
    ax.set_visible(False)
  mode = 'fast' if result.get('fast') else 'full'
  fig.suptitle(
    f'RMSprop state stored as float32, 8-bit or 4-bit blockwise codes ({mode} mode)',
    fontsize='medium',
  )
  plotting.caption(
    fig,
    'Lines: mean over seeds; shading: min to max over seeds. Legend: state bytes relative to '
    'float32 state, and the final headline metric of the panel title (mean over seeds). Every '
    'leaf with a shape is quantized (min_size=0).',
  )
  return fig
