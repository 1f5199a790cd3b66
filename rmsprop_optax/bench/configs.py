"""What the benchmark times: the optimizer configurations and the parameter trees.

Each configuration is ours, ``optax.rmsprop`` with the same settings, and the
``torch.optim.RMSprop`` keyword arguments that match (None: torch has none).
Each tree is a dict of leaf shapes; :func:`materialize` makes float32 arrays of them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rmsprop_optax import presets
from rmsprop_optax._quantize import quantized
from rmsprop_optax._rmsprop import rmsprop

LR = 1e-3


MOMENTUM = 0.9


# name -> (ours, optax peer, torch.optim.RMSprop kwargs or None).
# The PyTorch preset keeps lr outside the momentum buffer; optax puts it
# inside. With a constant lr the two agree, so optax.rmsprop(eps_in_sqrt=False,
# decay=0.99) is the closest optax configuration.
CONFIGS: dict[str, tuple[Callable[[], Any], Callable[[], Any], dict[str, Any] | None]] = {
  'plain': (
    lambda: rmsprop(LR),
    lambda: optax.rmsprop(LR),
    {'alpha': 0.9},
  ),
  'momentum': (
    lambda: rmsprop(LR, momentum=MOMENTUM),
    lambda: optax.rmsprop(LR, momentum=MOMENTUM),
    {'alpha': 0.9, 'momentum': MOMENTUM},
  ),
  'centered_momentum': (
    lambda: rmsprop(LR, centered=True, momentum=MOMENTUM),
    lambda: optax.rmsprop(LR, centered=True, momentum=MOMENTUM),
    {'alpha': 0.9, 'momentum': MOMENTUM, 'centered': True},
  ),
  'bias_correction': (
    lambda: rmsprop(LR, bias_correction=True),
    lambda: optax.rmsprop(LR, bias_correction=True),
    None,  # torch has no bias-corrected RMSprop
  ),
  'pytorch_momentum': (
    lambda: presets.pytorch(LR, momentum=MOMENTUM),
    lambda: optax.rmsprop(LR, decay=0.99, eps=1e-8, eps_in_sqrt=False, momentum=MOMENTUM),
    {'alpha': 0.99, 'momentum': MOMENTUM},
  ),
  # Quantized state (``accumulator_dtype=quantized(bits)``): timed against
  # optax.rmsprop with the same settings and against ours with float32 state
  # (the config named in QUANTIZED), all in one rotation. Torch has no 8-bit
  # RMSprop.
  'plain_q8': (
    lambda: rmsprop(LR, accumulator_dtype=quantized(8)),
    lambda: optax.rmsprop(LR),
    None,
  ),
  'centered_momentum_q8': (
    lambda: rmsprop(LR, centered=True, momentum=MOMENTUM, accumulator_dtype=quantized(8)),
    lambda: optax.rmsprop(LR, centered=True, momentum=MOMENTUM),
    None,
  ),
  'plain_q4': (
    lambda: rmsprop(LR, accumulator_dtype=quantized(4)),
    lambda: optax.rmsprop(LR),
    None,
  ),
  # The float code map (``quantized(8, map='float')``): codes read and written
  # with arithmetic instead of lookup tables.
  'plain_q8f': (
    lambda: rmsprop(LR, accumulator_dtype=quantized(8, map='float')),
    lambda: optax.rmsprop(LR),
    None,
  ),
  'centered_momentum_q8f': (
    lambda: rmsprop(
      LR, centered=True, momentum=MOMENTUM, accumulator_dtype=quantized(8, map='float')
    ),
    lambda: optax.rmsprop(LR, centered=True, momentum=MOMENTUM),
    None,
  ),
}


# Quantized config -> (the float32-state config it is compared with, its state label).
QUANTIZED: dict[str, tuple[str, str]] = {
  'plain_q8': ('plain', 'q8'),
  'centered_momentum_q8': ('centered_momentum', 'q8'),
  'plain_q4': ('plain', 'q4'),
  'plain_q8f': ('plain', 'q8f'),
  'centered_momentum_q8f': ('centered_momentum', 'q8f'),
}


def state_label(config: str) -> str:
  """``'float32'``, ``'q8'``, ``'q8f'`` (the float map) or ``'q4'``: how the config stores its state."""
  return QUANTIZED[config][1] if config in QUANTIZED else 'float32'


def one_leaf_tree(quick: bool) -> dict[str, tuple[int, ...]]:
  """One flat float32 leaf: 16M elements (quick: 256K)."""
  return {'w': ((1 << 18) if quick else (1 << 24),)}


def transformer_tree(quick: bool) -> dict[str, tuple[int, ...]]:
  """A GPT-like tree: embeddings, 8 blocks of 12 leaves, final norm and head (101 leaves)."""
  d, vocab, layers = (32, 256, 2) if quick else (256, 8192, 8)
  shapes: dict[str, tuple[int, ...]] = {'embed': (vocab, d), 'pos_embed': (512, d)}
  for i in range(layers):
    block = {
      'ln1_scale': (d,),
      'ln1_bias': (d,),
      'qkv_w': (d, 3 * d),
      'qkv_b': (3 * d,),
      'out_w': (d, d),
      'out_b': (d,),
      'ln2_scale': (d,),
      'ln2_bias': (d,),
      'mlp_w1': (d, 4 * d),
      'mlp_b1': (4 * d,),
      'mlp_w2': (4 * d, d),
      'mlp_b2': (d,),
    }
    shapes.update({f'block{i}/{k}': v for k, v in block.items()})
  shapes.update({'ln_f_scale': (d,), 'ln_f_bias': (d,), 'head': (d, vocab)})
  return shapes


def cnn_tree(quick: bool) -> dict[str, tuple[int, ...]]:
  """A ResNet-like tree of small leaves: 75 conv blocks of 4 leaves (300 leaves)."""
  blocks, width = (6, 8) if quick else (75, 32)
  shapes: dict[str, tuple[int, ...]] = {}
  for i in range(blocks):
    c = width * (1 + i // 25)
    shapes.update(
      {
        f'conv{i}/kernel': (3, 3, c, c),
        f'conv{i}/bias': (c,),
        f'bn{i}/scale': (c,),
        f'bn{i}/bias': (c,),
      }
    )
  return shapes


TREES: dict[str, Callable[[bool], dict[str, tuple[int, ...]]]] = {
  'one_leaf': one_leaf_tree,
  'transformer': transformer_tree,
  'cnn': cnn_tree,
}


def tree_shapes(
  tree: str, quick: bool, one_leaf_elements: int | None
) -> dict[str, tuple[int, ...]]:
  if tree == 'one_leaf' and one_leaf_elements is not None:
    return {'w': (one_leaf_elements,)}
  return TREES[tree](quick)


def materialize(
  shapes: dict[str, tuple[int, ...]], seed: int, scale: float
) -> dict[str, jax.Array]:
  # NumPy, not jax.random: one eager compile per distinct shape costs seconds.
  rng = np.random.default_rng(seed)
  return {
    k: jnp.asarray(scale * rng.standard_normal(s, dtype=np.float32)) for k, s in shapes.items()
  }


def nbytes(tree: Any) -> int:
  return int(sum(np.prod(np.shape(x)) * jnp.result_type(x).itemsize for x in jax.tree.leaves(tree)))
