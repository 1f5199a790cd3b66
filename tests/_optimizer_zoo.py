"""Optimizers the reliability tests (sharding, checkpoints, faults) run over.

Every preset at its framework's defaults (``tf1`` needs a learning rate), each
with momentum and centering switched on where the preset has them, and
``rmsprop(...)`` with the stateful options: a scheduled learning rate and
momentum (two more int32 counts in the state), centered, Nesterov, coupled
weight decay; and bias correction with momentum and decoupled decay. Names,
not objects, travel to subprocesses.
"""

from __future__ import annotations

from collections.abc import Callable

import optax

import rmsprop_optax
from rmsprop_optax import presets


def _lr_schedule(count):
  return optax.cosine_decay_schedule(1e-2, decay_steps=50, alpha=0.1)(count)


def _momentum_schedule(count):
  return optax.linear_schedule(0.5, 0.9, transition_steps=10)(count)


OPTIMIZERS: dict[str, Callable[[], optax.GradientTransformation]] = {
  'pytorch': lambda: presets.pytorch(),
  'pytorch_centered_momentum': lambda: presets.pytorch(
    lr=1e-2, momentum=0.9, centered=True, weight_decay=1e-3
  ),
  'keras': lambda: presets.keras(),
  'keras_centered_momentum': lambda: presets.keras(
    learning_rate=1e-2, momentum=0.9, centered=True, weight_decay=1e-3
  ),
  'tf1': lambda: presets.tf1(1e-2),
  'tf1_centered_momentum': lambda: presets.tf1(1e-2, momentum=0.9, centered=True),
  'timm_tf': lambda: presets.timm_tf(),
  'timm_tf_centered_momentum': lambda: presets.timm_tf(
    momentum=0.9, centered=True, weight_decay=1e-3, decoupled_decay=True
  ),
  'graves2013': lambda: presets.graves2013(),
  'dqn_nature': lambda: presets.dqn_nature(),
  'lasagne': lambda: presets.lasagne(learning_rate=1e-2),
  'scheduled_centered_momentum': lambda: rmsprop_optax.rmsprop(
    _lr_schedule,
    decay=0.95,
    eps=1e-6,
    momentum=_momentum_schedule,
    nesterov=True,
    centered=True,
    weight_decay=1e-3,
  ),
  # Centered + bias correction is left out on purpose: its first step is
  # g / sqrt(eps) (the variance estimate at t = 1 is exactly 0), 1e4 g at
  # eps = 1e-8, a jump these reliability tests have no use for.
  'bias_corrected_momentum': lambda: rmsprop_optax.rmsprop(
    1e-2,
    decay=0.99,
    momentum=0.9,
    bias_correction=True,
    decoupled_weight_decay=True,
    weight_decay=1e-3,
  ),
}

# One per preset function (for tests that need only "every preset").
PRESETS = ('pytorch', 'keras', 'tf1', 'timm_tf', 'graves2013', 'dqn_nature', 'lasagne')

# The kind of per-parameter buffer each optimizer's state must hold.
CENTERED = {
  'pytorch_centered_momentum',
  'keras_centered_momentum',
  'tf1_centered_momentum',
  'timm_tf_centered_momentum',
  'graves2013',
  'dqn_nature',
  'scheduled_centered_momentum',
}
MOMENTUM = {
  'pytorch_centered_momentum',
  'keras_centered_momentum',
  'tf1_centered_momentum',
  'timm_tf_centered_momentum',
  'graves2013',
  'scheduled_centered_momentum',
  'bias_corrected_momentum',
}


def expected_buffers(name: str) -> set[str]:
  """State fields shaped like the params: ``nu`` always, ``mu``, ``trace``."""
  kinds = {'nu'}
  if name in CENTERED:
    kinds.add('mu')
  if name in MOMENTUM:
    kinds.add('trace')
  return kinds


def make(name: str) -> optax.GradientTransformation:
  return OPTIMIZERS[name]()
