"""Optax's sharding tests on 8 virtual CPU devices, run in a subprocess by test_optax_ported.py.

Ported from ``optax/_src/sharding_test.py`` (Optax 0.2.8), ``ShardingTest``:
``test_state_sharding_type_init_match_update`` and
``test_state_sharding_type_preserved_with_jit``. Upstream sets
``XLA_FLAGS=--xla_force_host_platform_device_count=8`` at import; here that
happens in this separate process so the pytest process keeps its single device.

``python tests/_optax_ported_sharding_worker.py`` runs every case for every
optimizer and prints one line ``RESULT {json}``; a failing check is a traceback
and exit status 1.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import _eight_devices  # noqa: F401  (before JAX: 8 virtual CPU devices)
import jax
import jax.numpy as jnp
import optax

import rmsprop_optax

# Upstream's entry is ``'rmsprop': optax.rmsprop(1.0)``. The second entry is not
# upstream's: it runs the same checks on the mean and momentum buffers.
OPTIMIZERS = {
  'rmsprop': lambda: rmsprop_optax.rmsprop(1.0),
  'rmsprop_centered_momentum': lambda: rmsprop_optax.rmsprop(1.0, momentum=0.9, centered=True),
}


def _assert_same_types(a: Any, b: Any, what: str) -> int:
  """Same tree and the same ``jax.typeof`` (shape, dtype, sharding) at every leaf."""
  types_a = jax.tree.map(jax.typeof, a)
  types_b = jax.tree.map(jax.typeof, b)
  assert jax.tree.structure(types_a) == jax.tree.structure(types_b), (what, a, b)
  leaves_a, leaves_b = jax.tree.leaves(types_a), jax.tree.leaves(types_b)
  for x, y in zip(leaves_a, leaves_b, strict=True):
    assert x == y, f'{what}: {x} != {y}'
  return len(leaves_a)


def _explicit_mesh() -> tuple[Any, jax.Array]:
  mesh = jax.make_mesh((8,), ('x',), axis_types=(jax.sharding.AxisType.Explicit,))
  sharding = jax.sharding.NamedSharding(mesh, jax.P(None, 'x'))
  return mesh, sharding


def test_state_sharding_type_init_match_update(optimizer: optax.GradientTransformation) -> int:
  mesh, sharding = _explicit_mesh()
  with jax.set_mesh(mesh):
    params = jnp.zeros((2, 8, 4), dtype=jnp.float16, out_sharding=sharding)

    state0 = optimizer.init(params)
    _, state1 = optimizer.update(params, state0, params)
    return _assert_same_types(state0, state1, 'init vs update')


def test_state_sharding_type_preserved_with_jit(optimizer: optax.GradientTransformation) -> int:
  mesh, sharding = _explicit_mesh()
  with jax.set_mesh(mesh):
    params = jnp.zeros((2, 8, 4), dtype=jnp.float16, out_sharding=sharding)

    state0 = optimizer.init(params)
    state1 = jax.jit(optimizer.init)(params)
    checked = _assert_same_types(state0, state1, 'init vs jit(init)')

    _, state2 = optimizer.update(params, state0, params)
    _, state3 = jax.jit(optimizer.update)(params, state0, params)
    return checked + _assert_same_types(state2, state3, 'update vs jit(update)')


CASES = {
  'test_state_sharding_type_init_match_update': test_state_sharding_type_init_match_update,
  'test_state_sharding_type_preserved_with_jit': test_state_sharding_type_preserved_with_jit,
}


def main() -> int:
  assert jax.device_count() == 8, f'expected 8 virtual CPU devices, got {jax.devices()}'
  checked: dict[str, dict[str, int]] = {}
  for case, fn in CASES.items():
    checked[case] = {name: fn(make()) for name, make in OPTIMIZERS.items()}
  print('RESULT ' + json.dumps({'leaves_checked': checked}), flush=True)
  return 0


if __name__ == '__main__':
  sys.exit(main())
