"""``rmsprop(...)`` against the float64 NumPy reference, every option combination.

Reference: ``_harness.RmspropReference`` (written from the update equations, no
code shared with the package). Each case runs ``STEPS`` steps under ``jit`` with
a ``lax.scan`` and compares the parameter trajectory; metric
``_harness.max_rel_error`` over the stacked trajectory, bounds
``_harness.BOUNDS``.
"""

from __future__ import annotations

import itertools

import jax
import numpy as np
import pytest
from _harness import (
  FLOAT32_BOUND,
  FLOAT64_BOUND,
  RmspropReference,
  max_rel_error,
  scan_trajectory,
  schedule_pair,
)
from _harness import trajectory as reference_trajectory

import rmsprop_optax

# Long enough for the sign flips of make_problem (every 50 steps) and the
# schedules below to matter; shorter than the parity runs, as this file runs
# ~150 configurations.
STEPS = 200

LR = 1e-2
SHAPES = {'w': (3, 4), 'b': (5,), 's': ()}

lr_schedule, np_lr_schedule = schedule_pair(lambda c, xp: LR * (1.0 + 0.5 * xp.cos(0.1 * c)))
decay_schedule, np_decay_schedule = schedule_pair(lambda c, xp: 0.9 + 0.05 * xp.sin(0.05 * c))


def make_problem(seed: int, dtype, zero_first: bool = False):
  """Params and a fixed gradient sequence: noise plus a persistent mean.

  The persistent mean (0.3) makes the centered variants differ from the plain
  ones; a sign flip every 50 steps makes the sequence non-stationary.

  ``zero_first`` (used for centered + bias correction in float32): at t = 2
  the variance estimate is a two-sample variance ``w (1 - w) (g1 - g2)^2``
  computed as ``nu_hat - mu_hat^2``, which float32 resolves only to ~1e-7
  ``nu_hat``; for an element whose first two gradients are close, that
  cancellation error dominates eps in any float32 implementation (3.6e-4 here).
  A zero first gradient makes the t = 2 variance ``w (1 - w) g2^2``, well
  conditioned. float64 runs the unmodified sequence, t = 1 included.
  """
  rng = np.random.default_rng(seed)
  params = {k: rng.normal(size=s) for k, s in SHAPES.items()}
  grads = {}
  for k, s in SHAPES.items():
    noise = rng.normal(size=(STEPS, *s))
    sign = np.where((np.arange(STEPS) // 50) % 2 == 0, 1.0, -1.0).reshape(-1, *([1] * len(s)))
    grads[k] = (0.3 + noise) * sign * rng.uniform(0.5, 2.0)
    if zero_first:
      grads[k][0] = 0.0
  cast = lambda t: {k: np.asarray(v, dtype) for k, v in t.items()}
  return cast(params), cast(grads)


def run_ours(opt, params, grads):
  """Params after each step, from one jitted scan, as NumPy."""
  return jax.tree.map(np.asarray, scan_trajectory(opt, params, grads))


def run_reference(ref: RmspropReference, params, grads):
  """The reference's params after each step, stacked like ``run_ours``'s."""
  steps = reference_trajectory(ref, params, lambda p, t: {k: v[t] for k, v in grads.items()}, STEPS)
  return {k: np.stack([p[k] for p in steps]) for k in params}


def check(kwargs: dict, ref_kwargs: dict, dtype, seed: int = 0) -> float:
  zero_first = bool(
    kwargs.get('centered') and kwargs.get('bias_correction') and dtype == np.float32
  )
  params, grads = make_problem(seed, dtype, zero_first)
  ours = run_ours(rmsprop_optax.rmsprop(**kwargs), params, grads)
  ref = run_reference(RmspropReference(**ref_kwargs), params, grads)
  # Normalised by each leaf's largest value over the whole trajectory.
  err = max_rel_error(ours, ref)
  tol = FLOAT64_BOUND if dtype == np.float64 else FLOAT32_BOUND
  assert err <= tol, f'max relative error {err:.3e} > {tol:.0e} for {kwargs}'
  return err


# The core flags, as a full product. Momentum: none, heavy ball, Nesterov.
MOMENTUM = {'none': {}, 'heavy': {'momentum': 0.9}, 'nesterov': {'momentum': 0.9, 'nesterov': True}}
CORE = [
  (m, lr_in, centered, bc, in_sqrt)
  for m, lr_in, centered, bc, in_sqrt in itertools.product(
    MOMENTUM, (True, False), (False, True), (False, True), (True, False)
  )
  if m != 'none' or lr_in  # lr placement only matters with momentum
]


def core_kwargs(m, lr_in, centered, bc, in_sqrt, dtype):
  kw = dict(
    learning_rate=LR,
    decay=0.9,
    eps=1e-8,
    centered=centered,
    bias_correction=bc,
    eps_in_sqrt=in_sqrt,
    lr_in_momentum=lr_in,
    **MOMENTUM[m],
  )
  return kw


@pytest.mark.parametrize('dtype', [np.float64, np.float32], ids=['f64', 'f32'])
@pytest.mark.parametrize('combo', CORE, ids=lambda c: '-'.join(str(x) for x in c))
def test_core_flags_match_reference(combo, dtype, x64):
  kw = core_kwargs(*combo, dtype)
  check(kw, kw, dtype)


# The remaining options, as a full product on top of centered Nesterov
# momentum with the learning rate outside the buffer (the variant with the
# most moving parts) and on top of the plain variant.
EXTRA = list(
  itertools.product(
    ('none', 'coupled', 'decoupled', 'coupled-masked', 'decoupled-masked'),
    (False, True),  # maximize
    (0.0, 1.0),  # initial_scale
    (False, True),  # learning-rate and decay schedules
  )
)


@pytest.mark.parametrize('dtype', [np.float64, np.float32], ids=['f64', 'f32'])
@pytest.mark.parametrize('base', ['plain', 'centered-nesterov-lr-outside'])
@pytest.mark.parametrize('extra', EXTRA, ids=lambda c: '-'.join(str(x) for x in c))
def test_extra_options_match_reference(extra, base, dtype, x64):
  wd_mode, maximize, initial_scale, scheduled = extra
  kw = dict(learning_rate=LR, decay=0.9, eps=1e-8, maximize=maximize, initial_scale=initial_scale)
  if base != 'plain':
    kw.update(centered=True, momentum=0.9, nesterov=True, lr_in_momentum=False)
  ref_kw = dict(kw)
  if wd_mode != 'none':
    mask = {'w': True, 'b': False, 's': True} if wd_mode.endswith('masked') else None
    kw.update(weight_decay=0.05, decoupled_weight_decay=wd_mode.startswith('decoupled'))
    ref_kw.update(kw, weight_decay_mask=mask)
    kw['weight_decay_mask'] = mask
  if scheduled:
    kw.update(learning_rate=lr_schedule, decay=decay_schedule)
    ref_kw.update(learning_rate=np_lr_schedule, decay=np_decay_schedule)
  check(kw, ref_kw, dtype)


@pytest.mark.parametrize('lr_in_momentum', [True, False])
def test_momentum_and_weight_decay_schedules_match_reference(lr_in_momentum, x64):
  """Every schedulable hyperparameter at once, read with the pre-increment count."""
  mom, np_mom = schedule_pair(lambda c, xp: 0.5 + 0.4 * (1 - xp.exp(-0.05 * c)))
  wd = lambda c: 0.01 * (1 + (c % 7))
  kw = dict(
    learning_rate=lr_schedule, decay=decay_schedule, momentum=mom, lr_in_momentum=lr_in_momentum
  )
  ref_kw = dict(
    learning_rate=np_lr_schedule,
    decay=np_decay_schedule,
    momentum=np_mom,
    lr_in_momentum=lr_in_momentum,
  )
  for decoupled in (False, True):
    check(
      dict(kw, weight_decay=wd, decoupled_weight_decay=decoupled),
      dict(ref_kw, weight_decay=wd, decoupled_weight_decay=decoupled),
      np.float64,
    )


def test_mean_decay_differs_from_decay(x64):
  kw = dict(learning_rate=LR, decay=0.99, mean_decay=0.8, centered=True, momentum=0.5)
  check(kw, kw, np.float64)
  check(dict(kw, bias_correction=True), dict(kw, bias_correction=True), np.float64)


def test_lr_placement_differs_only_under_a_schedule(x64):
  """With a constant lr the two placements agree; with a schedule they differ."""
  params, grads = make_problem(3, np.float64)
  runs = {}
  for lr_name, lr in (('const', LR), ('sched', lr_schedule)):
    for inside in (True, False):
      opt = rmsprop_optax.rmsprop(lr, momentum=0.9, lr_in_momentum=inside)
      runs[lr_name, inside] = run_ours(opt, params, grads)
  const_gap = max_rel_error(runs['const', True], runs['const', False])
  sched_gap = max_rel_error(runs['sched', True], runs['sched', False])
  assert const_gap < 1e-12
  assert sched_gap > 1e-3
