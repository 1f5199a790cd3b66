"""Deep RL: DQN on CartPole-v1 (gymnax), trained with ``presets.dqn_nature``.

DQN (Mnih et al. 2015) with its two stabilisers, a replay buffer and a target
network, and the Huber loss; the whole loop (acting in ``NUM_ENVS`` vectorised
gymnax environments, storing transitions, one gradient step per vector step,
the periodic target copy) is one jitted ``lax.scan``.

Optimizers:

- ``rmsprop_optax.presets.dqn_nature(learning_rate=3e-3)``: the paper's
  centered RMSprop (decay 0.95, eps 0.01 inside the root). The learning rate
  is raised 12x from the paper's 2.5e-4, which was tuned for Atari's 50M
  frames: with eps = 0.01 inside the root and CartPole's small TD gradients
  the denominator is ~0.1, so steps are short; in fast mode 2.5e-4 and 5e-4
  had not learned anything after 20k transitions, while 3e-3 had;
- SGD ``optax.sgd(1e-2)``;
- Adam ``optax.adam(1e-3)`` (the usual modern choice for DQN).

Evaluation: mean undiscounted return of the greedy policy over
``EVAL_EPISODES`` episodes (the episode limit is 500), next to a uniformly
random policy on the same starts (~22).
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


def optimizers() -> dict[str, optax.GradientTransformation]:
  return {
    'rmsprop (dqn_nature)': rmsprop_optax.presets.dqn_nature(learning_rate=3e-3),
    'sgd': optax.sgd(1e-2),
    'adam': optax.adam(1e-3),
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

  carry, (dones, returns) = _common.scan_in_chunks(
    step, carry, jnp.zeros((steps, 0)), 10, desc=desc, progress=progress
  )
  greedy_return = jax.jit(
    lambda p, k: evaluate(lambda o, _: jnp.argmax(q_values(p, o), axis=1), k, env, env_params)
  )(carry.params, eval_key)
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
  return curve, metrics


def random_policy_return(seed: int) -> float:
  env, env_params = _env()
  num_actions = env.action_space(env_params).n

  def policy(obs: jax.Array, key: jax.Array) -> jax.Array:
    return jax.random.randint(key, (obs.shape[0],), 0, num_actions)

  key = jax.random.split(jax.random.key(seed), 4)[3]
  return float(jax.jit(lambda k: evaluate(policy, k, env, env_params))(key))


def run(*, fast: bool = False, seed: int = 0, progress: bool = False) -> dict[str, Any]:
  """Trains DQN with each optimizer; reports the greedy policy's mean return."""
  steps = STEPS_FAST if fast else STEPS_FULL
  metrics: dict[str, dict[str, float]] = {}
  curves: dict[str, list[float]] = {}
  for name, opt in optimizers().items():
    curves[name], metrics[name] = _train(opt, steps, seed, f'{NAME}/{name}', progress)
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
  }
