"""Deep RL: DQN on CartPole-v1 (gymnax), trained with ``presets.dqn_nature``.

DQN (Mnih et al. 2015) with its two stabilisers, a replay buffer and a target
network, and the Huber loss; the whole loop (acting in ``NUM_ENVS`` vectorised
gymnax environments, storing transitions, one gradient step per vector step,
the periodic target copy) is one jitted ``lax.scan``.

Optimizers:

- ``rmsprop_optax.presets.dqn_nature(learning_rate=3e-3)``: the paper's
  centered RMSprop (decay 0.95, eps 0.01 inside the root). The learning rate,
  12x the paper's 2.5e-4 (tuned for Atari's 50M frames), is a tuning choice:
  with eps = 0.01 inside the root the denominator is at least
  ``sqrt(0.01) = 0.1``, so small TD gradients take short steps; in one
  fast-mode run 2.5e-4 and 5e-4 had not learned after 20k transitions, while
  3e-3 had;
- SGD ``optax.sgd(1e-2)``;
- Adam ``optax.adam(1e-3)`` (the usual modern choice for DQN).

Evaluation: mean undiscounted return of the greedy policy over
``EVAL_EPISODES`` episodes (the episode limit is 500), next to a uniformly
random policy on the same starts.

Over five seeds (``python -m rmsprop_optax demo dqn --seeds 5``, seeds 0–4,
on a 2-core AMD EPYC virtual machine; another CPU rounds differently, so
rerun it there), greedy mean return, mean (min–max): RMSprop (dqn_nature)
235.5 (172.1–301.5), SGD 214.3 (62.33–500), Adam 152.4 (121.7–199.8); the
random policy 21.91 (20.09–24.7). Every optimizer beat the random policy on
every seed, but no ranking among them held on every seed: RMSprop beat SGD
on 3 of 5 and Adam on 4 of 5, SGD beat Adam on 2 of 5. DQN's return varies
widely from seed to seed; five seeds are a rough gauge.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import rmsprop_optax
from rmsprop_optax.demos import _common

NAME = 'dqn'
NUM_ENVS = 8
BUFFER_SIZE = 20_000
BATCH_SIZE = 128
GAMMA = 0.99
TARGET_PERIOD = 250  # gradient steps between target-network copies
WARMUP = 125  # vector steps (1,000 transitions) of pure exploration before learning
EPS_END = 0.05
EXPLORE_FRACTION = 0.5  # epsilon decays linearly from 1 to EPS_END over this share of steps
EVAL_EPISODES = 64
HIDDEN = 64
STEPS_FAST = 2_500  # vector steps: 20k transitions
STEPS_FULL = 6_000  # 48k transitions
# The greedy policy is evaluated EVAL_POINTS times during training (after each
# equal share of the steps, plus once before), on EVAL_CURVE_EPISODES episodes:
# cheap next to training, and it is what the table's greedy return measures.
EVAL_POINTS = 20
EVAL_CURVE_EPISODES = 32


# Learning rate per optimizer (all constant).
LEARNING_RATES = {'rmsprop (dqn_nature)': 3e-3, 'sgd': 1e-2, 'adam': 1e-3}


def optimizers(accumulator_dtype: Any = None) -> dict[str, optax.GradientTransformation]:
  """The three optimizers; ``accumulator_dtype`` (e.g. ``quantized(8)``) is RMSprop's only.

  The preset takes no ``accumulator_dtype``: with one, RMSprop is the preset's
  call of :func:`rmsprop_optax.rmsprop` (centered, decay 0.95, eps 0.01 inside
  the root, no momentum) with that argument added.
  """
  lr = LEARNING_RATES
  rms_lr = lr['rmsprop (dqn_nature)']
  if accumulator_dtype is None:
    rms = rmsprop_optax.presets.dqn_nature(learning_rate=rms_lr)
  else:
    rms = rmsprop_optax.rmsprop(
      rms_lr,
      decay=0.95,
      eps=0.01,
      eps_in_sqrt=True,
      centered=True,
      accumulator_dtype=accumulator_dtype,
    )
  return {
    'rmsprop (dqn_nature)': rms,
    'sgd': optax.sgd(lr['sgd']),
    'adam': optax.adam(lr['adam']),
  }


def _env() -> tuple[Any, Any]:
  import gymnax

  return gymnax.make('CartPole-v1')


def init_q(key: jax.Array, obs_dim: int, num_actions: int) -> list[tuple[jax.Array, jax.Array]]:
  sizes = (obs_dim, HIDDEN, HIDDEN, num_actions)
  keys = jax.random.split(key, len(sizes) - 1)
  return [
    (jax.random.normal(k, (m, n)) * np.sqrt(2.0 / m), jnp.zeros(n))
    for k, m, n in zip(keys, sizes[:-1], sizes[1:], strict=True)
  ]


def q_values(params: list[tuple[jax.Array, jax.Array]], obs: jax.Array) -> jax.Array:
  x = obs
  for w, b in params[:-1]:
    x = jax.nn.relu(x @ w + b)
  w, b = params[-1]
  return x @ w + b


class Buffer(NamedTuple):
  obs: jax.Array
  action: jax.Array
  reward: jax.Array
  next_obs: jax.Array
  done: jax.Array
  written: jax.Array  # number of transitions ever written (int32 scalar)


class Carry(NamedTuple):
  params: Any
  target: Any
  opt_state: Any
  buffer: Buffer
  env_state: Any
  obs: jax.Array
  episode_return: jax.Array
  key: jax.Array
  t: jax.Array


def evaluate(
  policy: Any, key: jax.Array, env: Any, env_params: Any, episodes: int = EVAL_EPISODES
) -> jax.Array:
  """Mean return of ``policy(obs, key) -> actions`` over ``episodes`` vectorised episodes."""
  reset_key, run_key = jax.random.split(key)
  obs, state = jax.vmap(env.reset, (0, None))(jax.random.split(reset_key, episodes), env_params)

  def body(carry: Any, key: jax.Array) -> tuple[Any, None]:
    obs, state, total, alive = carry
    act_key, step_key = jax.random.split(key)
    action = policy(obs, act_key)
    obs, state, reward, terminated, truncated, _ = jax.vmap(env.step, (0, 0, 0, None))(
      jax.random.split(step_key, episodes), state, action, env_params
    )
    total = total + reward * alive
    return (obs, state, total, alive * (1.0 - (terminated | truncated))), None

  zeros = jnp.zeros(episodes)
  steps = env_params.max_steps_in_episode
  (_, _, total, _), _ = jax.lax.scan(
    body, (obs, state, zeros, jnp.ones(episodes)), jax.random.split(run_key, steps)
  )
  return total.mean()


def _train(
  opt: optax.GradientTransformation, steps: int, seed: int, desc: str, progress: bool
) -> tuple[list[float], dict[str, float]]:
  """The epsilon-greedy training curve (50 windows) and the metrics of one run."""
  curve, metrics, _ = _train_with_eval(opt, steps, seed, desc, progress)
  return curve, metrics


def _train_with_eval(
  opt: optax.GradientTransformation, steps: int, seed: int, desc: str, progress: bool
) -> tuple[list[float], dict[str, float], list[float]]:
  """Trains one optimizer; also returns the greedy return at ``EVAL_POINTS + 1`` points."""
  env, env_params = _env()
  num_actions = env.action_space(env_params).n
  obs_dim = env.observation_space(env_params).shape[0]
  key, init_key, reset_key, eval_key = jax.random.split(jax.random.key(seed), 4)
  params = init_q(init_key, obs_dim, num_actions)
  obs, env_state = jax.vmap(env.reset, (0, None))(jax.random.split(reset_key, NUM_ENVS), env_params)
  buffer = Buffer(
    obs=jnp.zeros((BUFFER_SIZE, obs_dim)),
    action=jnp.zeros(BUFFER_SIZE, jnp.int32),
    reward=jnp.zeros(BUFFER_SIZE),
    next_obs=jnp.zeros((BUFFER_SIZE, obs_dim)),
    done=jnp.zeros(BUFFER_SIZE),
    written=jnp.zeros([], jnp.int32),
  )
  carry = Carry(
    params,
    params,
    opt.init(params),
    buffer,
    env_state,
    obs,
    jnp.zeros(NUM_ENVS),
    key,
    jnp.zeros([], jnp.int32),
  )

  def td_loss(params: Any, target: Any, batch: Buffer) -> jax.Array:
    q = jnp.take_along_axis(q_values(params, batch.obs), batch.action[:, None], axis=1)[:, 0]
    next_q = q_values(target, batch.next_obs).max(axis=1)
    y = batch.reward + GAMMA * (1.0 - batch.done) * next_q
    return optax.huber_loss(q, jax.lax.stop_gradient(y)).mean()

  def step(c: Carry, _: None) -> tuple[Carry, tuple[jax.Array, jax.Array]]:
    key, act_key, explore_key, step_key, sample_key = jax.random.split(c.key, 5)
    frac = jnp.clip(c.t / (EXPLORE_FRACTION * steps), 0.0, 1.0)
    epsilon = 1.0 + frac * (EPS_END - 1.0)
    greedy = jnp.argmax(q_values(c.params, c.obs), axis=1)
    random = jax.random.randint(act_key, (NUM_ENVS,), 0, num_actions)
    explore = jax.random.uniform(explore_key, (NUM_ENVS,)) < epsilon
    action = jnp.where(explore, random, greedy)
    # gymnax 1.0 follows Gymnasium: it resets a finished episode inside step
    # and returns the last observation in info['final_observation']. Only a
    # termination (the pole fell) stops bootstrapping; the 500-step time limit
    # (truncation) does not, as the return would have continued.
    obs, env_state, reward, terminated, truncated, info = jax.vmap(env.step, (0, 0, 0, None))(
      jax.random.split(step_key, NUM_ENVS), c.env_state, action, env_params
    )
    next_obs = info['final_observation']
    done = terminated.astype(jnp.float32)
    ended = (terminated | truncated).astype(jnp.float32)
    b = c.buffer
    idx = (b.written + jnp.arange(NUM_ENVS)) % BUFFER_SIZE
    b = Buffer(
      obs=b.obs.at[idx].set(c.obs),
      action=b.action.at[idx].set(action),
      reward=b.reward.at[idx].set(reward),
      next_obs=b.next_obs.at[idx].set(next_obs),
      done=b.done.at[idx].set(done),
      written=b.written + NUM_ENVS,
    )
    size = jnp.minimum(b.written, BUFFER_SIZE)
    sample = jax.random.randint(sample_key, (BATCH_SIZE,), 0, size)
    batch = b._replace(**{f: getattr(b, f)[sample] for f in Buffer._fields if f != 'written'})
    grads = jax.grad(td_loss)(c.params, c.target, batch)
    updates, opt_state = opt.update(grads, c.opt_state, c.params)
    learn = c.t >= WARMUP
    params = jax.tree.map(
      lambda new, old: jnp.where(learn, new, old), optax.apply_updates(c.params, updates), c.params
    )
    opt_state = jax.tree.map(lambda new, old: jnp.where(learn, new, old), opt_state, c.opt_state)
    copy = (c.t - WARMUP) % TARGET_PERIOD == 0
    target = jax.tree.map(lambda p, q: jnp.where(copy, p, q), params, c.target)
    episode_return = c.episode_return + reward
    finished = (ended, episode_return)
    carry = Carry(
      params,
      target,
      opt_state,
      b,
      env_state,
      obs,
      episode_return * (1.0 - ended),
      key,
      c.t + 1,
    )
    return carry, finished

  greedy = lambda p: lambda o, _: jnp.argmax(q_values(p, o), axis=1)
  eval_during = jax.jit(
    lambda p, k: evaluate(greedy(p), k, env, env_params, episodes=EVAL_CURVE_EPISODES)
  )
  # Training in EVAL_POINTS jitted chunks, with a greedy evaluation after each
  # (its keys are folded from eval_key, so training draws the same numbers).
  run_chunk = jax.jit(lambda c, x: jax.lax.scan(step, c, x))
  size = steps // EVAL_POINTS
  outs = []
  greedy_curve = [float(eval_during(carry.params, jax.random.fold_in(eval_key, 0)))]
  with _common.progress_bar(steps, desc, progress) as advance:
    for i in range(EVAL_POINTS):
      carry, out = run_chunk(carry, jnp.zeros((size, 0)))
      outs.append(jax.device_get(out))
      greedy_curve.append(float(eval_during(carry.params, jax.random.fold_in(eval_key, i + 1))))
      advance(size)
  dones, returns = (np.concatenate(a) for a in zip(*outs, strict=True))
  greedy_return = jax.jit(lambda p, k: evaluate(greedy(p), k, env, env_params))(
    carry.params, eval_key
  )
  # Training curve: mean return of the (epsilon-greedy) episodes that ended in
  # each 1/50 of training; a window with no finished episode repeats the last value.
  curve: list[float] = []
  for d, r in zip(np.array_split(dones, 50), np.array_split(returns, 50), strict=True):
    ended = r[d > 0]
    curve.append(float(ended.mean()) if ended.size else (curve[-1] if curve else 0.0))
  last = returns[-steps // 10 :][dones[-steps // 10 :] > 0]
  metrics = {
    'greedy_mean_return': float(greedy_return),
    'train_return_last_10pct': float(last.mean()) if last.size else float('nan'),
  }
  return curve, metrics, greedy_curve


def run_rmsprop(
  *, fast: bool = False, seed: int = 0, accumulator_dtype: Any = None, progress: bool = False
) -> dict[str, Any]:
  """RMSprop (dqn_nature) alone, as in :func:`run`, its state stored as ``accumulator_dtype``.

  Returns the final ``metrics``, the headline ``metric`` name, its ``curve``
  (greedy return at ``EVAL_POINTS + 1`` points) with ``curve_x``, and the
  initial ``params`` (for the state's size).
  """
  steps = STEPS_FAST if fast else STEPS_FULL
  opt = optimizers(accumulator_dtype)['rmsprop (dqn_nature)']
  _, metrics, greedy_curve = _train_with_eval(opt, steps, seed, f'{NAME}/rmsprop', progress)
  env, env_params = _env()
  init_key = jax.random.split(jax.random.key(seed), 4)[1]
  params = init_q(
    init_key, env.observation_space(env_params).shape[0], env.action_space(env_params).n
  )
  return {
    'metric': 'greedy_mean_return',
    'metrics': metrics,
    'curve': greedy_curve,
    'curve_x': [i * steps * NUM_ENVS / EVAL_POINTS for i in range(EVAL_POINTS + 1)],
    'curve_xlabel': 'transitions',
    'params': params,
  }


def random_policy_return(seed: int) -> float:
  env, env_params = _env()
  num_actions = env.action_space(env_params).n

  def policy(obs: jax.Array, key: jax.Array) -> jax.Array:
    return jax.random.randint(key, (obs.shape[0],), 0, num_actions)

  key = jax.random.split(jax.random.key(seed), 4)[3]
  return float(jax.jit(lambda k: evaluate(policy, k, env, env_params))(key))


def run(
  *, fast: bool = False, seed: int = 0, progress: bool = False, num_seeds: int | None = None
) -> dict[str, Any]:
  """:func:`run_seed` for ``num_seeds`` seeds from ``seed`` (:func:`~._common.run_seeds`)."""
  return _common.run_seeds(run_seed, fast=fast, seed=seed, progress=progress, num_seeds=num_seeds)


def run_seed(*, fast: bool = False, seed: int = 0, progress: bool = False) -> dict[str, Any]:
  """Trains DQN with each optimizer; reports the greedy policy's mean return."""
  steps = STEPS_FAST if fast else STEPS_FULL
  metrics: dict[str, dict[str, float]] = {}
  curves: dict[str, list[float]] = {}
  greedy_curves: dict[str, list[float]] = {}
  for name, opt in optimizers().items():
    curves[name], metrics[name], greedy_curves[name] = _train_with_eval(
      opt, steps, seed, f'{NAME}/{name}', progress
    )
  random_return = random_policy_return(seed)
  metrics['random policy'] = {'greedy_mean_return': random_return}
  return {
    'name': NAME,
    'metrics': metrics,
    'curves': curves,
    'curve_label': 'training episode return (epsilon-greedy)',
    'curve_xlabel': f'transitions (x{steps * NUM_ENVS // 50})',
    'curve_logy': False,
    'baselines': {'random policy': random_return},
    # Each window of the training curve ends after this many transitions.
    'curve_x_label': 'transitions',
    'curve_x': [(i + 1) * steps * NUM_ENVS / 50 for i in range(50)],
    'greedy_curves': greedy_curves,
    'greedy_x': [i * steps * NUM_ENVS / EVAL_POINTS for i in range(EVAL_POINTS + 1)],
    'eval_episodes': EVAL_CURVE_EPISODES,
    'final_eval_episodes': EVAL_EPISODES,
    'learning_rates': dict(LEARNING_RATES),
  }


def figure(result: dict[str, Any]) -> Any:
  """The greedy return during training (smoothed) against the random policy."""
  import matplotlib.pyplot as plt

  from rmsprop_optax.demos import plotting

  fig, (ax, ax_train) = plt.subplots(
    1, 2, figsize=(12.0, 4.8), layout='constrained', width_ratios=(3, 2)
  )
  x = result['greedy_x']
  for name, values in result['greedy_curves'].items():
    color = plotting.color_for(name.split(' (')[0])
    ax.plot(x, values, 'o', color=color, markersize=3, alpha=0.4)
    ax.plot(x, plotting.smooth(values, 3), color=color, linewidth=1.8, label=name)
    # The table's figure: one evaluation of the final policy on EVAL_EPISODES episodes.
    final = result['metrics'][name]['greedy_mean_return']
    ax.plot(x[-1], final, 'D', color=color, markeredgecolor='black', markersize=8, zorder=5)
  for label, value in result['baselines'].items():
    ax.axhline(value, linestyle='--', color='0.35', linewidth=1.2, label=label)
  values = [*result['greedy_curves'].values(), *result['curves'].values()]
  top = min(520.0, 1.15 * max(max(v) for v in values))
  ax.set_ylim(0, top)
  ax.set_xlabel('transitions')
  ax.set_ylabel(f'greedy return (mean of {result["eval_episodes"]} episodes, max 500)')
  final_episodes = result.get('final_eval_episodes', EVAL_EPISODES)
  ax.set_title(
    'greedy policy during training (dots; line: mean of the last 3);\n'
    f"diamond: the table's final greedy return ({final_episodes} episodes)",
    fontsize='medium',
  )
  ax.grid(True, alpha=0.3)
  ax.legend(loc='upper left', framealpha=0.9, fontsize='small')
  plotting.draw_curves({**result, 'curves': result['curves'], 'baselines': {}}, ax_train)
  for line in ax_train.get_lines():
    line.set_color(plotting.color_for(str(line.get_label()).split(' (')[0]))
  ax_train.legend().remove()
  ax_train.set_ylim(0, top)
  ax_train.set_title('epsilon-greedy training episodes (mean per window)', fontsize='medium')
  fig.suptitle(
    'DQN on CartPole-v1: ' + plotting.versus(result['learning_rates']), fontsize='medium'
  )
  return fig
