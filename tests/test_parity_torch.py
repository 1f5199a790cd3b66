"""``presets.pytorch`` against the real ``torch.optim.RMSprop`` (torch 2.13, CPU).

Reference: PyTorch itself, driven by :mod:`rmsprop_optax.parity` on the same
regression minibatches; tolerance: ``_harness.BOUNDS`` (float32 1e-5, float64
1e-10, max relative error of the parameter trajectory, max over steps and
leaves of ``max|ours - torch| / max|torch|``).
"""

from __future__ import annotations

import inspect

import pytest
from _harness import BOUNDS, CONTRAST, FLOAT64_BOUND, LONG_STEPS, PARITY_STEPS, contrast, need

torch = need('torch')

import optax  # noqa: E402

from rmsprop_optax import parity, presets, rmsprop  # noqa: E402

# The hardest configurations (a changing lr with momentum) also run LONG_STEPS.
LONG = ('ExponentialLR momentum=0.9', 'lr set each step, centered momentum wd')

CASES = {case.name: case for case in parity.torch_cases()}
EXPONENTIAL = 'ExponentialLR momentum=0.9'  # torch ExponentialLR(gamma=SCHEDULE_GAMMA)


@pytest.mark.parametrize('dtype', ['float32', 'float64'])
@pytest.mark.parametrize('name', sorted(CASES))
def test_pytorch_preset_matches_torch(name, dtype):
  err = parity.measure(CASES[name], dtype, PARITY_STEPS)
  assert err <= BOUNDS[dtype], f'{name} {dtype}: max relative error {err:.3e}'


@pytest.mark.parametrize('dtype', ['float32', 'float64'])
@pytest.mark.parametrize('name', LONG)
def test_pytorch_preset_matches_torch_over_1000_steps(name, dtype):
  err = parity.measure(CASES[name], dtype, LONG_STEPS)
  assert err <= BOUNDS[dtype], f'{name} {dtype}: max relative error {err:.3e}'


def test_cases_cover_every_option():
  """momentum 0 / 0.9, centered, weight_decay, maximize, several alpha and eps, changing lr."""
  names = ' '.join(CASES)
  for needle in (
    'momentum=0.9',
    'centered',
    'weight_decay',
    'maximize',
    'alpha=0.9',
    'alpha=0.5',
    'alpha=0.999',
    'ExponentialLR',
    'lr set each step',
  ):
    assert needle in names


def test_argument_names_and_defaults_match_torch():
  torch_sig = inspect.signature(torch.optim.RMSprop).parameters
  ours = inspect.signature(presets.pytorch).parameters
  # Everything but the params and torch's execution switches is ours too.
  execution_only = {'params', 'capturable', 'foreach', 'differentiable'}
  assert set(torch_sig) - execution_only == set(ours)
  for name, p in ours.items():
    assert p.default == torch_sig[name].default, name


def _contrast(tx: optax.GradientTransformation, kwargs: dict, schedule: bool):
  """Error of ``tx`` against torch with ``kwargs`` (ExponentialLR if ``schedule``), float64."""
  if schedule:
    return contrast(tx, CASES[EXPONENTIAL].reference)
  return contrast(tx, lambda problem, steps: parity.run_torch(kwargs, problem, steps))


def test_torch_puts_eps_outside_the_root():
  """Conventions table: eps inside the root misses torch (eps = 0.1 makes it visible)."""
  kwargs = {'lr': 1e-2, 'eps': 0.1}
  inside = rmsprop(1e-2, decay=0.99, eps=0.1, eps_in_sqrt=True)
  outside = rmsprop(1e-2, decay=0.99, eps=0.1, eps_in_sqrt=False)
  assert _contrast(inside, kwargs, False) > CONTRAST
  assert _contrast(outside, kwargs, False) <= FLOAT64_BOUND


def test_torch_keeps_lr_outside_the_momentum_buffer():
  """Conventions table: with a changing lr, lr inside the buffer misses torch."""
  lr = parity.float_count(optax.exponential_decay(parity.SCHEDULE_LR0, 1, parity.SCHEDULE_GAMMA))
  common = dict(decay=0.99, eps=1e-8, eps_in_sqrt=False, momentum=0.9)
  inside = rmsprop(lr, lr_in_momentum=True, **common)
  outside = rmsprop(lr, lr_in_momentum=False, **common)
  assert _contrast(inside, {}, True) > CONTRAST
  assert _contrast(outside, {}, True) <= FLOAT64_BOUND


def test_torch_weight_decay_is_coupled_l2():
  """Conventions table: decoupled decay misses torch's ``g += wd * p``."""
  kwargs = {'lr': 1e-2, 'weight_decay': 0.1}
  common = dict(decay=0.99, eps=1e-8, eps_in_sqrt=False, weight_decay=0.1)
  assert _contrast(rmsprop(1e-2, decoupled_weight_decay=True, **common), kwargs, False) > CONTRAST
  assert _contrast(rmsprop(1e-2, **common), kwargs, False) <= FLOAT64_BOUND
