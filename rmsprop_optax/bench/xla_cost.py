"""What a compiled step costs by XLA's own accounting: peak memory, bytes moved, kernels.

Each reads one ``jax.stages.Compiled`` and returns None where the backend does not say.
"""

from __future__ import annotations

import re
from typing import Any


def memory_analysis(compiled: Any) -> dict[str, Any] | None:
  try:
    ma = compiled.memory_analysis()
  except Exception:  # noqa: BLE001 - some backends do not implement it
    return None
  if ma is None:
    return None
  peak = (
    ma.argument_size_in_bytes
    + ma.output_size_in_bytes
    - ma.alias_size_in_bytes
    + ma.temp_size_in_bytes
  )
  return {
    'argument_bytes': int(ma.argument_size_in_bytes),
    'output_bytes': int(ma.output_size_in_bytes),
    'alias_bytes': int(ma.alias_size_in_bytes),
    'temp_bytes': int(ma.temp_size_in_bytes),
    'peak_bytes': int(peak),
  }


def xla_bytes_accessed(compiled: Any) -> int | None:
  """Bytes the compiled program reads and writes, by XLA's own cost model."""
  try:
    ca = compiled.cost_analysis()
  except Exception:  # noqa: BLE001 - some backends do not implement it
    return None
  if isinstance(ca, list):
    ca = ca[0] if ca else None
  if not ca or 'bytes accessed' not in ca:
    return None
  return int(ca['bytes accessed'])


# Entry-computation instructions that launch no kernel of their own.
_NOT_KERNELS = frozenset(
  {'parameter', 'tuple', 'get-tuple-element', 'bitcast', 'constant', 'opt-barrier'}
)


def kernel_count(compiled: Any) -> int | None:
  """Instructions of the optimized entry computation that run as kernels (fusions, copies...)."""
  try:
    text = compiled.as_text()
  except Exception:  # noqa: BLE001
    return None
  if not text or 'ENTRY' not in text:
    return None
  entry = text[text.index('ENTRY') :]
  entry = entry[entry.index('{') + 1 : entry.index('\n}')]
  count = 0
  for line in entry.splitlines():
    # "%name = f32[...]{0} fusion(%a, %b), kind=kLoop, ..." -> "fusion"
    rhs = line.split(' = ', 1)[1] if ' = ' in line else ''
    op = re.search(r'(?:^|\s)([a-z][\w\-]*)\(', rhs)
    if op and op.group(1) not in _NOT_KERNELS:
      count += 1
  return count
