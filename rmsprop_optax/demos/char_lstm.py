"""Language modelling: a character-level LSTM on the standard library's docstrings.

RMSprop's classic LSTM benchmark (Penn Treebank) needs a download; the docstrings
of a fixed list of standard-library modules (module docstrings, then those of
their public classes and functions in name order) ship with every Python and
give ~180k characters of English prose with code in it (177,579 on Python
3.11; the docstrings change between Python versions). Characters outside
printable ASCII become ``?``. The last 10% of the text is held out.

The model is a one-layer LSTM (written out in JAX, one fused matmul per step,
``lax.scan`` over time) trained by truncated backpropagation on random
windows; validation perplexity is ``exp`` of the mean cross-entropy per
character over the held-out text in non-overlapping windows.

Baselines: the unigram model (character frequencies of the training text,
add-one smoothed) and uniform over the vocabulary. Optimizers, each after
``optax.clip_by_global_norm(1.0)`` (standard for LSTMs since Graves 2013):

- RMSprop ``rmsprop_optax.rmsprop(3e-3, decay=0.9)``;
- SGD ``optax.sgd(1.0)`` (the classic LSTM-LM learning rate, Zaremba et al. 2014);
- Adam ``optax.adam(3e-3)``.

Over five seeds (``python -m rmsprop_optax demo char_lstm --seeds 5``, seeds
0–4, on a 2-core AMD EPYC virtual machine; another CPU rounds differently, so
rerun it there), validation perplexity, mean (min–max): RMSprop 8.098
(8.039–8.156), Adam 8.336 (8.287–8.375), SGD 12.08 (11.79–12.35), against
29.99 for the unigram model and 97 for uniform. RMSprop beat Adam, and Adam
beat SGD, on 5 of 5 seeds.
"""

from __future__ import annotations

import importlib
import inspect
import string
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import rmsprop_optax
from rmsprop_optax.demos import _common, plotting

NAME = 'char_lstm'

# Modules whose docstrings make the corpus. All are pure-Python parts of the
# standard library with no import side effects.
MODULES = (
  'argparse',
  'bisect',
  'collections',
  'csv',
  'dataclasses',
  'decimal',
  'difflib',
  'enum',
  'fractions',
  'functools',
  'heapq',
  'inspect',
  'itertools',
  'json',
  'logging',
  'os',
  'pathlib',
  'random',
  're',
  'statistics',
  'string',
  'subprocess',
  'textwrap',
  'threading',
  'typing',
  'unittest',
  'urllib.parse',
)
VOCAB = sorted(set(string.printable) - set('\x0b\x0c\r'))
UNKNOWN = '?'

# (hidden, embedding, sequence length, batch, steps).
CONFIG_FAST = dict(hidden=64, embed=32, seq_len=32, batch=32, steps=300)
CONFIG_FULL = dict(hidden=128, embed=32, seq_len=64, batch=32, steps=1000)
VAL_FRACTION = 0.1
# Validation perplexity is measured before training and after each 1/EVAL_POINTS
# of the steps (the training loop runs in that many jitted chunks).
EVAL_POINTS = 10


# Learning rate per optimizer (constant; RMSprop decay 0.9; gradients clipped to
# global norm CLIP_NORM for all).
LEARNING_RATES = {'rmsprop': 3e-3, 'sgd': 1.0, 'adam': 3e-3}
CLIP_NORM = 1.0


def optimizers(accumulator_dtype: Any = None) -> dict[str, optax.GradientTransformation]:
  """The three optimizers; ``accumulator_dtype`` (e.g. ``quantized(8)``) is RMSprop's only."""
  clip = optax.clip_by_global_norm(CLIP_NORM)
  lr = LEARNING_RATES
  rms = rmsprop_optax.rmsprop(lr['rmsprop'], decay=0.9, accumulator_dtype=accumulator_dtype)
  return {
    'rmsprop': optax.chain(clip, rms),
    'sgd': optax.chain(clip, optax.sgd(lr['sgd'])),
    'adam': optax.chain(clip, optax.adam(lr['adam'])),
  }


def corpus() -> str:
  """The docstrings of ``MODULES``, gathered in a fixed order."""
  parts = []
  for module_name in MODULES:
    module = importlib.import_module(module_name)
    parts.append(inspect.getdoc(module) or '')
    for key in sorted(vars(module)):
      obj = getattr(module, key)
      if key.startswith('_') or getattr(obj, '__module__', None) != module.__name__:
        continue
      if inspect.isfunction(obj) or inspect.isclass(obj):
        parts.append(inspect.getdoc(obj) or '')
  known = set(VOCAB)
  text = '\n\n'.join(p for p in parts if p)
  return ''.join(c if c in known else UNKNOWN for c in text)


def encode(text: str) -> np.ndarray:
  index = {c: i for i, c in enumerate(VOCAB)}
  return np.array([index[c] for c in text], dtype=np.int32)


def unigram_perplexity(train: np.ndarray, val: np.ndarray, vocab: int) -> float:
  """Perplexity on ``val`` of the add-one-smoothed character frequencies of ``train``."""
  counts = np.bincount(train, minlength=vocab).astype(np.float64) + 1.0
  logp = np.log(counts / counts.sum())
  return float(np.exp(-logp[val].mean()))


def init_params(key: jax.Array, vocab: int, hidden: int, embed: int) -> dict[str, jax.Array]:
  k1, k2, k3 = jax.random.split(key, 3)
  w = jax.random.normal(k2, (embed + hidden, 4 * hidden)) / np.sqrt(embed + hidden)
  # Forget-gate bias 1 (Jozefowicz et al. 2015), so early memory is kept.
  b = jnp.zeros(4 * hidden).at[hidden : 2 * hidden].set(1.0)
  return {
    'embed': jax.random.normal(k1, (vocab, embed)) * 0.1,
    'w': w,
    'b': b,
    'w_out': jax.random.normal(k3, (hidden, vocab)) / np.sqrt(hidden),
    'b_out': jnp.zeros(vocab),
  }


def loss_fn(params: dict[str, jax.Array], tokens: jax.Array) -> jax.Array:
  """Mean next-character cross-entropy (nats) of ``tokens[:, 1:]`` given the prefix."""
  inputs, targets = tokens[:, :-1], tokens[:, 1:]
  hidden = params['w_out'].shape[0]
  batch = tokens.shape[0]

  def cell(carry: tuple[jax.Array, jax.Array], x: jax.Array) -> tuple[Any, jax.Array]:
    h, c = carry
    z = jnp.concatenate([x, h], -1) @ params['w'] + params['b']
    i, f, g, o = jnp.split(z, 4, axis=-1)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    h = jax.nn.sigmoid(o) * jnp.tanh(c)
    return (h, c), h

  zeros = jnp.zeros((batch, hidden))
  xs = params['embed'][inputs].swapaxes(0, 1)  # time-major for scan
  _, hs = jax.lax.scan(cell, (zeros, zeros), xs)
  logits = hs.swapaxes(0, 1) @ params['w_out'] + params['b_out']
  return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()


def _train(
  opt: optax.GradientTransformation,
  train: np.ndarray,
  val_windows: np.ndarray,
  cfg: dict[str, int],
  seed: int,
  desc: str,
  progress: bool,
) -> tuple[list[float], dict[str, float], list[float]]:
  """Trains one optimizer.

  Returns the training-perplexity curve (means over 50 windows of steps), the
  metrics, and the validation perplexity before training and after each of
  ``EVAL_POINTS`` equal shares of the steps (the last one is the metric).
  """
  init_key, data_key = jax.random.split(jax.random.key(seed))
  params = init_params(init_key, len(VOCAB), cfg['hidden'], cfg['embed'])
  opt_state = opt.init(params)
  data = jnp.asarray(train)
  window = cfg['seq_len'] + 1

  def step(carry: Any, start: jax.Array) -> tuple[Any, jax.Array]:
    params, opt_state = carry
    tokens = data[start[:, None] + jnp.arange(window)]
    loss, grads = jax.value_and_grad(loss_fn)(params, tokens)
    updates, opt_state = opt.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), loss

  # The same random windows for every optimizer.
  starts = jax.random.randint(data_key, (cfg['steps'], cfg['batch']), 0, len(train) - window)
  val_tokens = jnp.asarray(val_windows)
  val_loss_fn = jax.jit(loss_fn)
  val_curve = [float(np.exp(val_loss_fn(params, val_tokens)))]
  (params, _), losses = _common.scan_in_chunks(
    step,
    (params, opt_state),
    starts,
    EVAL_POINTS,
    desc=desc,
    progress=progress,
    after_chunk=lambda carry: val_curve.append(float(np.exp(val_loss_fn(carry[0], val_tokens)))),
  )
  val_loss = float(val_loss_fn(params, val_tokens))
  metrics = {
    'val_perplexity': float(np.exp(val_loss)),
    'val_bits_per_char': val_loss / float(np.log(2.0)),
    'train_perplexity_last_10pct': float(np.exp(np.mean(losses[-len(losses) // 10 :]))),
  }
  train_curve = [float(np.exp(v)) for v in _common.chunk_means(losses, 50)]
  return train_curve, metrics, val_curve


def _data(cfg: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
  """The training tokens and the held-out windows."""
  tokens = encode(corpus())
  split = int(len(tokens) * (1 - VAL_FRACTION))
  train, val = tokens[:split], tokens[split:]
  # Non-overlapping held-out windows of seq_len + 1 characters, state reset per window.
  window = cfg['seq_len'] + 1
  return train, val[: (len(val) // window) * window].reshape(-1, window)


def run_rmsprop(
  *, fast: bool = False, seed: int = 0, accumulator_dtype: Any = None, progress: bool = False
) -> dict[str, Any]:
  """RMSprop alone, as in :func:`run`, its state stored as ``accumulator_dtype``.

  Returns the final ``metrics``, the headline ``metric`` name, its ``curve``
  (training perplexity, means over 50 windows of steps) with ``curve_x``, and
  the initial ``params`` (for the state's size).
  """
  cfg = CONFIG_FAST if fast else CONFIG_FULL
  train, val_windows = _data(cfg)
  opt = optimizers(accumulator_dtype)['rmsprop']
  curve, metrics, _ = _train(opt, train, val_windows, cfg, seed, f'{NAME}/rmsprop', progress)
  init_key = jax.random.split(jax.random.key(seed))[0]
  return {
    'metric': 'val_perplexity',
    'metrics': metrics,
    'curve': curve,
    'curve_x': [(i + 0.5) * cfg['steps'] / 50 for i in range(50)],
    'curve_xlabel': 'step',
    'params': init_params(init_key, len(VOCAB), cfg['hidden'], cfg['embed']),
  }


def run(
  *, fast: bool = False, seed: int = 0, progress: bool = False, num_seeds: int | None = None
) -> dict[str, Any]:
  """:func:`run_seed` for ``num_seeds`` seeds from ``seed`` (:func:`~._common.run_seeds`)."""
  return _common.run_seeds(run_seed, fast=fast, seed=seed, progress=progress, num_seeds=num_seeds)


def run_seed(*, fast: bool = False, seed: int = 0, progress: bool = False) -> dict[str, Any]:
  """Trains the LSTM with each optimizer; reports validation perplexity.

  ``curves`` is what the table leads with, the validation perplexity, at
  ``EVAL_POINTS + 1`` points (its last value is the table's); ``train_curves``
  is the training perplexity (means over 50 windows of steps).
  """
  cfg = CONFIG_FAST if fast else CONFIG_FULL
  train, val_windows = _data(cfg)
  metrics: dict[str, dict[str, float]] = {}
  curves: dict[str, list[float]] = {}
  train_curves: dict[str, list[float]] = {}
  for name, opt in optimizers().items():
    train_curves[name], metrics[name], curves[name] = _train(
      opt, train, val_windows, cfg, seed, f'{NAME}/{name}', progress
    )
  unigram = unigram_perplexity(train, val_windows[:, 1:].ravel(), len(VOCAB))
  metrics['unigram baseline'] = {'val_perplexity': unigram}
  metrics['uniform baseline'] = {'val_perplexity': float(len(VOCAB))}
  return {
    'name': NAME,
    'metrics': metrics,
    'curves': curves,
    'curve_label': 'validation perplexity (held-out text, per character)',
    'curve_xlabel': 'step',
    'curve_logy': True,
    'baselines': {'unigram': unigram},
    'curve_x': [i * cfg['steps'] / EVAL_POINTS for i in range(EVAL_POINTS + 1)],
    'curve_x_label': 'step (batches of 32 sequences)',
    'train_curves': train_curves,
    # The training curves are means over 50 equal windows of steps: x at each window's middle.
    'train_curve_x': [(i + 0.5) * cfg['steps'] / 50 for i in range(50)],
    'learning_rates': dict(LEARNING_RATES),
    'title': (
      f'char LSTM (hidden {cfg["hidden"]}, clip {CLIP_NORM:g}): ' + plotting.versus(LEARNING_RATES)
    ),
  }


def figure(result: dict[str, Any]) -> Any:
  """Validation perplexity (the table's statistic) and training perplexity, side by side."""
  import textwrap

  import matplotlib.pyplot as plt

  fig, (ax_val, ax_train) = plt.subplots(1, 2, figsize=(12.0, 4.8), layout='constrained')
  plotting.draw_curves(result, ax_val)
  for line in ax_val.get_lines():
    if line.get_label() in result['curves']:
      line.set_marker('o')
      line.set_markersize(3.5)
  ax_val.set_title('validation perplexity (the table; last point = its value)', fontsize='medium')
  if 'train_curves' in result:
    train = {
      'curves': result['train_curves'],
      'curve_x': result['train_curve_x'],
      'curve_x_label': result.get('curve_x_label', 'step'),
      'curve_label': 'training perplexity (mean per window)',
      'curve_logy': True,
      'baselines': {},  # the unigram baseline is measured on the held-out text
    }
    plotting.draw_curves(train, ax_train)
    ax_train.set_title('training perplexity (random training windows)', fontsize='medium')
  else:
    ax_train.set_visible(False)
  title = result.get('title', result['name'])
  fig.suptitle('\n'.join(textwrap.wrap(title, 110)), fontsize='medium')
  return fig
