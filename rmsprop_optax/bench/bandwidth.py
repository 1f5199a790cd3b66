"""The memory-bandwidth probe: a jitted float32 stream kernel, timed.

The step's floor is the bytes it must move over this bandwidth.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import jax
import jax.numpy as jnp


class Probe:
  """A jitted float32 stream kernel on a donated array, timed per call.

  ``'add'``: ``a + b`` (2 reads, 1 write); ``'copy'``: ``a + 1`` (1 read, 1 write).
  """

  def __init__(self, n_elements: int, kind: str = 'add'):
    if kind == 'add':
      self.fn = jax.jit(lambda a, b: a + b, donate_argnums=0)
      self.rest: tuple[jax.Array, ...] = (jnp.ones((n_elements,), jnp.float32),)
    else:
      self.fn = jax.jit(lambda a: a + 1.0, donate_argnums=0)
      self.rest = ()
    self.bytes = (len(self.rest) + 2) * 4 * n_elements
    self.a = self.fn(jnp.ones((n_elements,), jnp.float32), *self.rest).block_until_ready()

  def seconds(self) -> float:
    t0 = time.perf_counter()
    self.a = self.fn(self.a, *self.rest).block_until_ready()
    return time.perf_counter() - t0

  def gb_per_s(self, calls: int = 3) -> float:
    """The median over ``calls`` timed calls (one call is a few ms: noisy)."""
    return self.bytes / statistics.median(self.seconds() for _ in range(calls)) / 1e9


def bandwidth_probe(probe: Probe, repeats: int) -> dict[str, Any]:
  """GB/s of ``probe`` (a jitted float32 ``a + b``), and of a copy (``a + 1``) beside it."""
  seconds = statistics.median(probe.seconds() for _ in range(repeats))
  n_elements = probe.a.size
  copy = Probe(n_elements, 'copy')
  copy_gb_per_s = copy.bytes / statistics.median(copy.seconds() for _ in range(repeats)) / 1e9
  del copy
  return {
    'probe': 'jitted float32 a + b, a donated (2 reads + 1 write)',
    'elements': n_elements,
    'bytes': probe.bytes,
    'seconds': seconds,
    'gb_per_s': probe.bytes / seconds / 1e9,
    'copy_gb_per_s': copy_gb_per_s,
  }
