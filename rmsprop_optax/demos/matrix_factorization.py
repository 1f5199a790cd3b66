"""Recommendation: matrix factorisation of a synthetic low-rank rating matrix.

A ``NUM_USERS x NUM_ITEMS`` rating matrix ``R = 3 + U V^T + noise`` with rank
``RANK`` factors and Gaussian noise of std ``NOISE``; only ``DENSITY`` of the
entries are observed, and the items are drawn with a Zipf-like popularity, as
in real catalogues, so rare items get few, small gradients. 20% of the
observed entries are held out.

Model: ``r_hat = mu + b_u + b_i + p_u . q_i`` with L2 penalty ``L2`` on the
factors, trained on minibatches of observed entries (the same batches for
every optimizer, the same number of steps). Reported: held-out RMSE, next to
the global-mean predictor and the noise floor (the best any model can do).

Optimizers (every rate decays on the same cosine schedule, see
``optimizers``; the peak rates are tuning choices, not results: each is the
best of a small grid in one fast-mode run):

- RMSprop ``rmsprop_optax.rmsprop(1e-2, decay=0.9)`` (of 3e-3, 1e-2, 3e-2):
  per-parameter scaling lifts the rarely-seen items' step sizes;
- SGD ``optax.sgd(0.6)`` (of 0.1, 0.3, 0.6; at 3.0 it diverged to NaN in
  fast mode on seeds 0–2): one learning rate must suit both the global
  offset ``mu``, whose gradient is O(1) every step, and the factors of a rare
  item, which appears in few minibatches and takes 1/256 of a minibatch's
  mean loss when it does; this is the problem RMSprop's per-parameter scale
  removes;
- AdaGrad ``optax.adagrad(1.0)`` (of 0.1, 0.3, 1.0): the classic choice for
  sparse factor models. On this stationary problem its ever-growing
  accumulator is no handicap; the non-stationary case where it loses is the
  ``adagrad_vs_rmsprop`` demo.

Over five seeds (``python -m rmsprop_optax demo matrix_factorization --seeds
5``, seeds 0–4, on a 2-core AMD EPYC virtual machine; another CPU rounds
differently, so rerun it there), held-out RMSE, mean (min–max): AdaGrad
0.3829 (0.3792–0.3857), RMSprop 0.4292 (0.4253–0.4319), SGD 0.5575
(0.5378–0.575), against 0.9958 for the global mean and the noise floor 0.25.
AdaGrad beat RMSprop, and RMSprop beat SGD, on 5 of 5 seeds.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import rmsprop_optax
from rmsprop_optax.demos import _common, plotting

NAME = 'matrix_factorization'
NUM_USERS = 600
NUM_ITEMS = 400
RANK = 5
NOISE = 0.25
DENSITY = 0.08
HELD_OUT = 0.2
FACTORS = 10  # model rank (over-parameterised: the true rank is unknown to the model)
L2 = 1e-4
BATCH_SIZE = 256
STEPS_FAST = 2_000
STEPS_FULL = 8_000
DATA_SEED = 1234  # the matrix is fixed; `seed` changes the init and the batches


# Peak learning rate per optimizer (cosine decay to 1% of it over the run).
PEAK_LEARNING_RATES = {'rmsprop': 1e-2, 'sgd': 0.6, 'adagrad': 1.0}


def optimizers(
  steps: int = STEPS_FULL, accumulator_dtype: Any = None
) -> dict[str, optax.GradientTransformation]:
  """The three optimizers, each with a cosine learning-rate decay over ``steps``.

  Why a decay for all: with a constant learning rate RMSprop's step does not
  shrink (it divides by the gradients' RMS), so it settles on the
  minibatch-noise floor, while SGD's steps shrink with its gradients; at
  constant rates the ranking would depend on the number of steps. Decaying
  every optimizer's rate the same way is the fair, standard comparison (the
  held-out RMSE of each is printed by ``python -m rmsprop_optax demo
  matrix_factorization``, its seed spread with ``--seeds N``).
  ``accumulator_dtype`` (e.g. ``quantized(8)``) is RMSprop's only.
  """
  lr = lambda name: optax.cosine_decay_schedule(PEAK_LEARNING_RATES[name], steps, alpha=0.01)
  return {
    'rmsprop': rmsprop_optax.rmsprop(lr('rmsprop'), decay=0.9, accumulator_dtype=accumulator_dtype),
    'sgd': optax.sgd(lr('sgd')),
    'adagrad': optax.adagrad(lr('adagrad')),
  }


def make_data() -> dict[str, np.ndarray]:
  """Observed (user, item, rating) triples, split into train and held-out."""
  rng = np.random.default_rng(DATA_SEED)
  u = rng.normal(size=(NUM_USERS, RANK)) / RANK**0.25
  v = rng.normal(size=(NUM_ITEMS, RANK)) / RANK**0.25
  n = int(DENSITY * NUM_USERS * NUM_ITEMS)
  # Zipf-like item popularity: item i is drawn with probability ~ 1 / (i + 10).
  pop = 1.0 / (np.arange(NUM_ITEMS) + 10.0)
  pairs: set[tuple[int, int]] = set()
  while len(pairs) < n:
    users = rng.integers(0, NUM_USERS, n)
    items = rng.choice(NUM_ITEMS, n, p=pop / pop.sum())
    pairs.update(zip(users.tolist(), items.tolist(), strict=True))
  users, items = np.array(sorted(pairs)[:n]).T
  ratings = 3.0 + np.sum(u[users] * v[items], axis=1) + NOISE * rng.normal(size=n)
  order = rng.permutation(n)
  test = order[: int(HELD_OUT * n)]
  train = order[int(HELD_OUT * n) :]
  out = {}
  for split, idx in (('train', train), ('test', test)):
    out[f'{split}_users'] = users[idx].astype(np.int32)
    out[f'{split}_items'] = items[idx].astype(np.int32)
    out[f'{split}_ratings'] = ratings[idx].astype(np.float32)
  return out


def predict(params: dict[str, jax.Array], users: jax.Array, items: jax.Array) -> jax.Array:
  p, q = params['users'][users], params['items'][items]
  return (
    params['mu'] + params['user_bias'][users] + params['item_bias'][items] + jnp.sum(p * q, axis=-1)
  )


def init_params(key: jax.Array, data: dict[str, np.ndarray]) -> dict[str, jax.Array]:
  ku, ki = jax.random.split(key)
  return {
    'mu': jnp.asarray(float(data['train_ratings'].mean())),
    'user_bias': jnp.zeros(NUM_USERS),
    'item_bias': jnp.zeros(NUM_ITEMS),
    'users': 0.1 * jax.random.normal(ku, (NUM_USERS, FACTORS)),
    'items': 0.1 * jax.random.normal(ki, (NUM_ITEMS, FACTORS)),
  }


def _train(
  opt: optax.GradientTransformation,
  data: dict[str, np.ndarray],
  steps: int,
  seed: int,
  desc: str,
  progress: bool,
) -> tuple[list[float], dict[str, float]]:
  init_key, batch_key = jax.random.split(jax.random.key(seed))
  params = init_params(init_key, data)
  tr = {k: jnp.asarray(v) for k, v in data.items()}

  def loss_fn(params: dict[str, jax.Array], idx: jax.Array) -> tuple[jax.Array, jax.Array]:
    err = predict(params, tr['train_users'][idx], tr['train_items'][idx]) - tr['train_ratings'][idx]
    mse = jnp.mean(err**2)
    reg = L2 * (jnp.sum(params['users'] ** 2) + jnp.sum(params['items'] ** 2))
    return mse + reg, mse

  def rmse(params: dict[str, jax.Array], split: str) -> jax.Array:
    err = predict(params, tr[f'{split}_users'], tr[f'{split}_items']) - tr[f'{split}_ratings']
    return jnp.sqrt(jnp.mean(err**2))

  def step(carry: Any, idx: jax.Array) -> tuple[Any, jax.Array]:
    params, opt_state = carry
    grads, _ = jax.grad(loss_fn, has_aux=True)(params, idx)
    updates, opt_state = opt.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    return (params, opt_state), rmse(params, 'test')

  batches = jax.random.randint(batch_key, (steps, BATCH_SIZE), 0, len(data['train_ratings']))
  (params, _), test_curve = _common.scan_in_chunks(
    step, (params, opt.init(params)), batches, 10, desc=desc, progress=progress
  )
  metrics = {
    'test_rmse': float(rmse(params, 'test')),
    'train_rmse': float(rmse(params, 'train')),
  }
  return _common.chunk_means(test_curve, 50), metrics


def run_rmsprop(
  *, fast: bool = False, seed: int = 0, accumulator_dtype: Any = None, progress: bool = False
) -> dict[str, Any]:
  """RMSprop alone, as in :func:`run`, its state stored as ``accumulator_dtype``.

  Returns the final ``metrics``, the headline ``metric`` name, its ``curve``
  (held-out RMSE, means over 50 windows of steps) with ``curve_x``, and the
  initial ``params`` (for the state's size).
  """
  steps = STEPS_FAST if fast else STEPS_FULL
  data = make_data()
  opt = optimizers(steps, accumulator_dtype)['rmsprop']
  curve, metrics = _train(opt, data, steps, seed, f'{NAME}/rmsprop', progress)
  return {
    'metric': 'test_rmse',
    'metrics': metrics,
    'curve': curve,
    'curve_x': [(i + 0.5) * steps / 50 for i in range(50)],
    'curve_xlabel': 'step',
    'params': init_params(jax.random.split(jax.random.key(seed))[0], data),
  }


def run(
  *, fast: bool = False, seed: int = 0, progress: bool = False, num_seeds: int | None = None
) -> dict[str, Any]:
  """:func:`run_seed` for ``num_seeds`` seeds from ``seed`` (:func:`~._common.run_seeds`)."""
  return _common.run_seeds(run_seed, fast=fast, seed=seed, progress=progress, num_seeds=num_seeds)


def run_seed(*, fast: bool = False, seed: int = 0, progress: bool = False) -> dict[str, Any]:
  """Fits the factorisation with each optimizer for the same number of steps."""
  steps = STEPS_FAST if fast else STEPS_FULL
  data = make_data()
  metrics: dict[str, dict[str, float]] = {}
  curves: dict[str, list[float]] = {}
  for name, opt in optimizers(steps).items():
    curves[name], metrics[name] = _train(opt, data, steps, seed, f'{NAME}/{name}', progress)
  mean_rmse = float(np.sqrt(np.mean((data['test_ratings'] - data['train_ratings'].mean()) ** 2)))
  metrics['global mean baseline'] = {'test_rmse': mean_rmse}
  metrics['noise floor'] = {'test_rmse': NOISE}
  return {
    'name': NAME,
    'metrics': metrics,
    'curves': curves,
    'curve_label': 'held-out RMSE',
    'curve_xlabel': f'step (x{steps // 50})',
    'curve_logy': True,
    'baselines': {'global mean': mean_rmse, 'noise floor': NOISE},
    # The curves are means over 50 equal windows of steps: x at each window's middle.
    'curve_x': [(i + 0.5) * steps / 50 for i in range(50)],
    'curve_x_label': f'step (minibatches of {BATCH_SIZE} ratings)',
    'learning_rates': dict(PEAK_LEARNING_RATES),
    'title': title(),
  }


def title() -> str:
  """The figure's title: the matrix, the data's rank and the (larger) model's, the rates."""
  return (
    f'matrix factorisation ({NUM_USERS}x{NUM_ITEMS}, data rank {RANK}, model rank '
    f'{FACTORS}): held-out RMSE, '
    + plotting.versus(PEAK_LEARNING_RATES, prefix='peak lr ')
    + ', cosine decay'
  )
