"""Blockwise-quantized optimizer state: 1 byte (or half a byte) per element.

Dettmers, Lewis, Shleifer and Zettlemoyer, "8-bit Optimizers via Block-wise
Quantization" (ICLR 2022, arXiv:2110.02861): each block of ``block_size``
consecutive elements keeps one float32 scale, its largest magnitude, and every
element stores the index of the nearest value of a fixed non-linear code map
applied to ``x / scale``. The map is their "dynamic tree" map, the one
bitsandbytes builds with ``create_dynamic_map``: values spread over seven
decades (three at 4 bits), so small moments keep relative precision. The
signed map serves ``mu`` and the momentum buffer.

``nu`` (never negative) gets the unsigned map without its code for 0
(``quantized(unsigned_zero=False)``, the default with round-to-nearest; see
:func:`code_map`). Li, Chen and Zhu, "Memory Efficient Optimizers with 4-bit
States" (NeurIPS 2023, arXiv:2309.01507) call the alternative the zero-point
problem: an element whose ``nu`` lies below half the smallest positive code
times its block's largest (1.6e-7 of it at 8 bits, 1.6e-3 at 4 bits) is
stored as 0, its next ``nu`` is ``(1 - decay) g**2`` alone, and its step
``g / sqrt((1 - decay) g**2)`` is up to ``1 / sqrt(1 - decay)`` times too
large (3.2x at decay 0.9). The code 0 instead stands for one more decade of
the tree (``0.55e-7``, ``0.55e-3`` at 4 bits), so an element reads 0 only
when its whole block does (scale 0). Measured against a float32 ``nu`` fed
the same gradients (seed 0 of the char LSTM, decay 0.9, and of the DQN,
decay 0.95, in ``python -m rmsprop_optax demo low_memory``): with
bitsandbytes' map 30% and 23% of the 4-bit ``nu`` elements were stored as 0
while positive (8 bits: 0.1% and 0.4%), and 0.20% of the LSTM's 4-bit steps
came out over 2x float32's; without the 0 none was stored as 0, 0.005% of
the steps were over 2x, and the root-mean-square step error fell from 13.5%
to 12.1% (4 bits; 8 bits: 1.8% either way, so the map barely matters there).
The price: an element below the smallest code reads as that code, so its
step is too small, never too large (at 4 bits 1.0% of the LSTM's steps were
under half float32's, 0.7% with the 0).

Storage only: each step dequantizes, runs the float32 arithmetic and
requantizes; the update uses the unrounded new moments. Blocks run along the
last axis, so the codes have the param's shape (8 bits) and shard like it.

The step's memory: each quantized leaf is stepped in chunks of about
``CHUNK_ELEMENTS``, written in place, so the step holds a few float32 chunks
beyond what the float32-state step holds, not full-size copies;
:func:`rmsprop_optax.step_memory` gives the figures for given params. The
chunks cut the leading axes, strided so that an axis sharded over devices
splits evenly, with no collective: the rows first, then the next axes where
rows are too few (layers stacked for a ``scan``, a conv kernel's ``(3, 3)``),
then the last axis's whole blocks (``(8, 2**21)``). The loop writes the
update over the gradient, in the param's row-major order: a gradient that
XLA lays out in another order (a batched matmul's, a convolution's kernel
gradient on CPU) is copied first, one gradient-sized buffer more than the
float32-state step, which reads it in place. XLA steps one leaf at a time,
so that is one leaf's, not the model's: a training step through eight
(3, 3, 512, 512) convolutions held 86 MiB of temporaries with 8-bit
centered + momentum state against 81 MiB with float32 state (plain: 81
against 87).
A 1-D leaf whose length is not a multiple of ``block_size`` (a flat vector
such as ``jax.flatten_util.ravel_pytree`` makes) is stepped in contiguous
runs of whole blocks instead (:func:`map_column_chunks`); sharded over
devices, its blocks straddle them and XLA gathers it. Four cases hold more.
With ``rounding='bitsandbytes'`` and settings bitsandbytes' RMSprop lacks
(momentum, centering, bias correction) each leaf is stepped whole: that
rounding of the second moment depends on how XLA fuses the step
(:func:`bitsandbytes_ema_of_squares`), and with momentum, centering and
coupled decay together a chunk's fusion rounded it otherwise. A leaf of two
or more dimensions whose leading axes cannot be cut into chunks and whose
last axis is not a whole number of blocks, e.g.
``(2, 2**21 + 100)``, is one chunk; and an axis of 2, 4 or 8 is never cut (a
chunk keeps each device's share of an axis sharded over up to 8), so
``(8, 8, 64, 4096)`` is cut into chunks of 2**20 elements. Under
``optax.MultiSteps``, which runs the inner step every time and then selects
between the old and new state, the new codes are held beside the old: one
byte per element per moment more than the float32-state ``MultiSteps`` step
holds (``tests/test_quantized_step.py`` bounds it), whose peak stays higher.

Small leaves are stepped together. XLA compiles each leaf's quantized step
into about two dozen kernels against a handful for float32 state, and its
compile time follows the kernels: 100 leaves of shapes ``(64 + i, 128)``
(centered + momentum) compiled in 31-34 s against 4-5 s. In a one-device
process, leaves of at most one chunk stepped alike are joined into leaves of
about :data:`GROUP_CHUNKS` chunks (:func:`leaf_groups`), stepped once and
split again, with the same results (see :func:`leaf_groups` for one
exception): those 100 leaves now compile in about the float32 state's time.
A larger leaf still compiles its own chunk loop: 30 leaves of shapes
``(512 + i, 512)`` compiled in 8.4-9.4 s against 1.3 s (joining them would
hold full-size copies, the memory the chunks save). The joined copies are
the step's temporaries, one group's at a time: each group's join waits for
the group before it (:func:`join`), without which XLA:CPU made every join
first and held all the copies at once. With the gradients an argument of
the step, 300 leaves ``(64 + i, 128)`` (8.2M elements) held 19 MiB with
centered + momentum state and 9 MiB plain (every group at once: 60 and 41;
the float32-state step holds none), and 600 leaves (27.9M elements) the
same 19 and 9. In a training step that computes the gradients, the 300
leaves held 7 MiB (plain: 5) more than the float32-state step (29 and 12
with every group at once).

The float map (``quantized(map='float')``, :func:`float_map`) is the same
kind of tree in base 4 with binary fractions, chosen so that a code's
float32 bits are linear in the code within each power of 4: reading one is
a shift and an add and rounding one a shift, where the dynamic map needs a
gather and a bucketed search, scalar loops on XLA:CPU. Gap by gap, its
codes lie 1.1x as far apart as the dynamic map's in [1/2, 1] of a block's
largest element (4.4x for the last, up to 1), half as far in [1/10, 1/2),
1.2-1.4x in [1/100, 1/10) and about 1.7x in [1/1000, 1/100); and they end
higher: ``2**-18`` of the largest for ``nu`` (the dynamic map:
``0.55e-7``), ``2**-14`` for ``mu`` and the momentum buffer (``0.55e-6``).
A plain, evenly spread 8-bit float (5 exponent and 3 mantissa
bits) was measured first and rejected: over ten seeds of the matrix
factorisation demo its held-out RMSE moved +0.00104 (SE 0.00002) from
float32 state, the dynamic map's +0.00037 (0.00001), the tapered one's
+0.00023 (0.00001).

The step's time: each quantized moment costs a block maximum and a code
per element that float32 state does not, and the dynamic map's lookups are
gathers. In a training step that computes its gradient, params and state
donated (``python -m rmsprop_optax bench``, its training-step table: one
4096 x 4096 leaf on 1 and 8 devices, and a tree of 101 leaves of a small
transformer), three runs on a 2-core x86 CPU took 2.0-2.4x the
float32-state step's time plain and 2.7-4.8x centered with momentum, and
with ``map='float'`` 1.5-2.0x and 2.0-3.1x (the highest on the transformer
tree, whose float32 step varied most between runs). With the gradient an
argument of the jitted step instead (bench's main table), 6.8-9.3x
(``map='float'``: 4.8-6.0x, but for one noisy row at 12.7x), plain or
centered with momentum alike: the loop writes the update over the
gradient, so XLA first copies a gradient that it does not own (donating it
does not help: no output takes its buffer), and the float32-state step
fuses the update into ``apply_updates``, which the loop cannot. Compute the
gradient in the jitted step that applies it.

Rounding is to the nearest code; stochastic rounding is not offered. It would
need a PRNG key in the state (split every step, checkpointed and sharded with
the rest), and what it removes is bias, which round-to-nearest does not show
here: the update never sees the rounded moments, a block whose elements all
decay together changes its scale, not its codes, and in the measurement
above the 8-bit steps summed to 1.001x the float32 steps' magnitude (4 bits:
0.999x), their error being noise of 1.8% (12%) per step, not a drift. Nor is
it a fix for the zero-point problem: an element rounded up or down at random
still reads 0 most of the time.

For bit-level agreement with bitsandbytes' 8-bit optimizers (CPU kernels,
``bitsandbytes/backends/cpu/ops.py`` and ``csrc/cpu_ops.cpp``) a spec can
instead take blocks over the flattened tensor (``layout='flat'``: bnb's
``absmax`` has ``ceil(numel / 256)`` entries) and bnb's own code choice
(``rounding='bitsandbytes'``): ``x * (1 / absmax)`` is clamped to [-1, 1],
mapped to one of 65536 evenly spaced bins, ``uint16((v + 1) * 0.5 * 65535 +
0.5)``, and each bin takes the code whose midpoint interval holds the bin's
left edge. That is round-to-nearest up to a bin's width (3e-5 of the block's
absmax), so small values, where the map's codes are closer than a bin, get a
neighbouring code; an all-zero block gets code 0 (``-1.0`` in the signed map)
and scale 0.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, TypeGuard

import jax
import jax.numpy as jnp
import numpy as np

# A code map's lookup tables as arrays, by name (see :func:`lookup_tables`).
Tables = dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class Quantized:
  """How to store optimizer state: see :func:`quantized`."""

  bits: int = 8
  block_size: int = 256
  min_size: int = 4096
  layout: str = 'last_axis'
  rounding: str = 'nearest'
  signed: bool | None = None
  unsigned_zero: bool | None = None
  map: str = 'dynamic'

  def __post_init__(self) -> None:
    if isinstance(self.bits, bool) or self.bits not in (4, 8):
      raise ValueError(f'quantized: `bits` must be 8 or 4, got {self.bits!r}')
    b = self.block_size
    if isinstance(b, bool) or not isinstance(b, int) or b < 2 or b & (b - 1):
      raise ValueError(
        f'quantized: `block_size` must be a power of two >= 2, got {self.block_size!r}'
      )
    m = self.min_size
    if isinstance(m, bool) or not isinstance(m, int) or m < 0:
      raise ValueError(f'quantized: `min_size` must be an integer >= 0, got {self.min_size!r}')
    if self.layout not in LAYOUTS:
      raise ValueError(f'quantized: `layout` must be one of {LAYOUTS}, got {self.layout!r}')
    if self.rounding not in ROUNDINGS:
      raise ValueError(f'quantized: `rounding` must be one of {ROUNDINGS}, got {self.rounding!r}')
    if self.bits != 8 and (self.layout, self.rounding) != ('last_axis', 'nearest'):
      raise ValueError(
        f'quantized: layout={self.layout!r} and rounding={self.rounding!r} need bits=8 '
        f'(the bitsandbytes 8-bit layout), got bits={self.bits}'
      )
    if self.signed is not None and not isinstance(self.signed, bool):
      raise ValueError(f'quantized: `signed` must be None, True or False, got {self.signed!r}')
    _check_map('quantized', self.map, self.bits, self.rounding, self.unsigned_zero)
    if self.unsigned_zero is None:
      # bitsandbytes' code choice comes with its maps; round-to-nearest gets the zero-free one.
      object.__setattr__(self, 'unsigned_zero', self.rounding == 'bitsandbytes')
    elif not isinstance(self.unsigned_zero, bool):
      raise ValueError(
        f'quantized: `unsigned_zero` must be None, True or False, got {self.unsigned_zero!r}'
      )


LAYOUTS = ('last_axis', 'flat')
ROUNDINGS = ('nearest', 'bitsandbytes')
MAPS = ('dynamic', 'float')


def _check_map(where: str, map: str, bits: int, rounding: str, unsigned_zero: bool | None) -> None:
  """ValueError (from ``where``) unless ``map`` is known and fits the other settings."""
  if map not in MAPS:
    raise ValueError(f'{where}: `map` must be one of {MAPS}, got {map!r}')
  if map == 'float' and (bits, rounding) != (8, 'nearest'):
    raise ValueError(
      f"{where}: map='float' needs bits=8 and rounding='nearest', got bits={bits} "
      f'and rounding={rounding!r}'
    )
  if map == 'float' and unsigned_zero:
    raise ValueError(
      f"{where}: map='float' has no code for 0 in its unsigned form; leave "
      '`unsigned_zero` None or False'
    )


def quantized(
  bits: int = 8,
  block_size: int | None = None,
  min_size: int = 4096,
  *,
  layout: str = 'last_axis',
  rounding: str = 'nearest',
  signed: bool | None = None,
  unsigned_zero: bool | None = None,
  map: str = 'dynamic',
) -> Quantized:
  """Blockwise-quantized state, accepted wherever ``accumulator_dtype`` is.

  Args:
    bits: 8 (one code per byte) or 4 (two codes per byte).
    block_size: elements per float32 scale, a power of two; default 256 for 8
      bits and 128 for 4 bits. Blocks run along the param's last axis (a
      shorter last axis is one block), so the state shards like the param.
    min_size: leaves with fewer elements keep float32 state (the scales and
      the code lookups do not pay for small biases and norms).
    layout: ``'last_axis'`` (above) or ``'flat'``: blocks of ``block_size``
      consecutive elements of the flattened (row-major) leaf, one 1-D
      ``scale`` per leaf, as bitsandbytes (8 bits only).
    rounding: ``'nearest'`` (the nearest code) or ``'bitsandbytes'``: bnb's
      CPU code choice, a 65536-bin lookup table (8 bits only; see the module
      docstring).
    signed: which code map every quantized leaf uses; ``None`` (default) picks
      by role, unsigned for ``nu`` and signed for ``mu`` and the momentum
      buffer. bitsandbytes' RMSprop stores its one state with the signed map.
    unsigned_zero: whether the unsigned map keeps bitsandbytes' code for 0.
      ``None`` (default): not with ``rounding='nearest'``, where that code
      stands for one more decade instead (``0.55e-7`` of the block's largest;
      ``0.55e-3`` at 4 bits), so that a small ``nu`` is never stored as 0 and
      its step never comes out up to ``1 / sqrt(1 - decay)`` times too large
      (Li et al.'s zero-point problem, see the module docstring); kept with
      ``rounding='bitsandbytes'``. ``True`` is bitsandbytes' unsigned map as
      it is (``nu``'s map before this option); the signed map always keeps
      its 0.
    map: ``'dynamic'`` (default): Dettmers et al.'s dynamic tree map, read
      and written through lookup tables. ``'float'`` (8 bits,
      round-to-nearest only): the same kind of tree in base 4 with binary
      fractions (:func:`float_map`), whose codes are read and written with
      integer arithmetic on float32's bits instead of tables; XLA fuses that
      with the rest of the step, where on a CPU a table lookup is a gather,
      a scalar loop. Its codes lie about as far apart as the dynamic map's
      near a block's largest element (1.1x), half as far from a tenth to a
      half of it, 1.2-1.7x below a tenth, and end higher: ``nu`` at
      ``2**-18`` of the largest, ``mu`` and the momentum buffer at
      ``2**-14`` (the dynamic map: ``0.55e-7`` and ``0.55e-6``).

  Returns:
    A spec for ``accumulator_dtype=``: ``nu``, ``mu`` and the momentum buffer
    become :class:`QuantizedTree` s: uint8 codes and float32 scales for leaves
    of at least ``min_size`` real float elements, float32 for the others. For 4 bits a
    leaf's last axis must also have even length (two codes share a byte).

  Raises:
    ValueError: for ``bits`` other than 8 or 4, a ``block_size`` that is not a
      power of two >= 2, a negative ``min_size``, an unknown ``layout``,
      ``rounding`` or ``map``, a non-default one with 4 bits, ``map='float'``
      with bitsandbytes' rounding or ``unsigned_zero=True``, or a ``signed``
      or ``unsigned_zero`` other than None, True or False.

  Examples:
    >>> import jax, jax.numpy as jnp, rmsprop_optax
    >>> opt = rmsprop_optax.rmsprop(1e-3, accumulator_dtype=rmsprop_optax.quantized(8))
    >>> state = opt.init({'w': jnp.zeros((256, 1024))})
    >>> nu = rmsprop_optax.find_rms_state(state).nu
    >>> nu.codes['w'].dtype, nu.codes['w'].shape, nu.scale['w'].shape
    (dtype('uint8'), (256, 1024), (256, 4))
  """
  if block_size is None:
    block_size = 256 if bits == 8 else 128
  return Quantized(
    bits=bits,
    block_size=block_size,
    min_size=min_size,
    layout=layout,
    rounding=rounding,
    signed=signed,
    unsigned_zero=unsigned_zero,
    map=map,
  )


@functools.partial(
  jax.tree_util.register_dataclass,
  data_fields=['codes', 'scale'],
  meta_fields=[
    'shape',
    'bits',
    'block_size',
    'signed',
    'layout',
    'rounding',
    'unsigned_zero',
    'map',
  ],
)
@dataclasses.dataclass(frozen=True)
class QuantizedArray:
  """A float32 array stored as blockwise codes; a pytree of two arrays.

  ``codes``: uint8, the param's shape (8 bits) or its last axis halved (4
  bits, low nibble first). ``scale``: float32, the largest magnitude of each
  block of ``block_size`` elements along the last axis, shape
  ``shape[:-1] + (ceil(shape[-1] / block_size),)``. The logical ``shape``,
  ``bits``, ``block_size``, ``signed`` and ``unsigned_zero`` (keyword only and
  required, which code map: :func:`code_map`; ``True`` is bitsandbytes' map)
  are static, as are
  ``layout``, ``rounding`` and ``map`` (see :func:`quantized`); with
  ``layout='flat'`` the blocks run over the flattened array and ``scale`` has
  shape ``(ceil(size / block_size),)``.
  """

  codes: jax.Array
  scale: jax.Array
  shape: tuple[int, ...]
  bits: int
  block_size: int
  signed: bool
  layout: str = 'last_axis'
  rounding: str = 'nearest'
  # No default: which map a code means must be said (quantized() resolves None).
  unsigned_zero: bool = dataclasses.field(kw_only=True)
  map: str = dataclasses.field(default='dynamic', kw_only=True)

  def __post_init__(self) -> None:
    _check_map('QuantizedArray', self.map, self.bits, self.rounding, self.unsigned_zero)

  @property
  def dtype(self) -> jnp.dtype:
    return jnp.dtype(jnp.float32)

  def lookup_tables(self) -> Tables:
    """The lookup tables of this array's map and rounding, as arrays (see :func:`lookup_tables`)."""
    return lookup_tables(
      self.bits,
      self.signed,
      unsigned_zero=self.unsigned_zero,
      rounding=self.rounding,
      map=self.map,
    )

  def _values(self, codes: jax.Array, tables: Tables | None) -> jax.Array:
    """The map's value of each code (before the scale)."""
    if self.map == 'float':
      return _float_values(codes, self.signed)
    return (tables or self.lookup_tables())['map'][codes.astype(jnp.int32)]

  def dequantize(self, tables: Tables | None = None) -> jax.Array:
    """The float32 values the codes stand for (``tables``: see :func:`lookup_tables`)."""
    if self.layout == 'flat':
      size = math.prod(self.shape)
      values = self._values(self.codes.reshape(-1), tables)
      scale = _per_element(self.scale, size, _block(size, self.block_size))
      return (values * scale).reshape(self.shape)
    codes = self.codes
    if self.bits == 4:
      codes = jnp.stack([codes & 15, codes >> 4], axis=-1).reshape(self.shape)
    values = self._values(codes, tables)
    n = self.shape[-1]
    return values * _per_element(self.scale, n, _block(n, self.block_size))


def _per_element(scale: jax.Array, n: int, b: int) -> jax.Array:
  """Each block's scale at each of the ``n`` elements of the last axis it covers.

  A broadcast and a reshape, which XLA fuses into the multiply; ``jnp.repeat``
  (a gather) made dequantizing about 6x slower on CPU.
  """
  blocks = scale.shape[-1]
  spread = jnp.broadcast_to(scale[..., None], (*scale.shape, b))
  spread = spread.reshape((*scale.shape[:-1], blocks * b))
  return spread if blocks * b == n else spread[..., :n]


def is_quantized(x: Any) -> TypeGuard[QuantizedArray]:
  return isinstance(x, QuantizedArray)


def is_bitsandbytes(x: Any) -> bool:
  """Whether ``x`` is state stored with bitsandbytes' code choice (its arithmetic follows bnb's)."""
  return isinstance(x, QuantizedArray) and x.rounding == 'bitsandbytes'


def bitsandbytes_ema_of_squares(decay: Any, nu: jax.Array, g: jax.Array) -> jax.Array:
  """``decay * nu + (1 - decay) * g**2`` rounded as bnb's CPU kernel rounds it.

  bitsandbytes (``backends/cpu/ops.py``, ``_optimizer_update_8bit_blockwise_cpu``)
  runs ``state.mul_(alpha).addcmul_(g, g, value=1 - alpha)``: ``alpha * nu``
  rounded on its own, then one fused multiply-add ``((1 - alpha) * g) * g +
  that``. XLA's default form, ``fma(decay, nu, (1 - decay) * g**2)``, differs
  in the last bit for about a quarter of the elements; a last bit is enough to
  move a value across one of the lookup table's bins, and a code of a small
  state moves the step by 1e-4 of the parameter. The sum is never below 0,
  so the ``maximum`` changes nothing but the fusion.
  """
  scaled = decay * nu
  # Which product the compiler fuses into the add is its choice; LLVM fuses
  # the one with fewer uses, so ``scaled`` gets a second (no-op) use. Without
  # it, this test fails (it runs without bitsandbytes installed):
  # tests/test_quantized.py::test_bitsandbytes_rounding_of_the_second_moment_holds_in_the_compiled_step
  return jnp.maximum(((1 - decay) * g) * g + scaled, scaled * 0)


@functools.cache
def code_map(bits: int, signed: bool, *, unsigned_zero: bool) -> np.ndarray:
  """The dynamic (tree) code map, sorted, as bitsandbytes' ``create_dynamic_map``.

  For 8 bits this is ``create_dynamic_map(signed, max_exponent_bits=7,
  total_bits=8)``: per decade ``10**-6 .. 1`` the midpoints of a linear grid
  on [0.1, 1] whose size doubles each decade, then 0 and 1 (and the
  negatives when signed). 4 bits use three decades.

  ``unsigned_zero=False`` (unsigned only; the signed map keeps its 0): the
  tree grows one decade further down in place of the 0. That decade's grid
  has one cell, so its one code is ``0.55e-7`` (``0.55e-3`` at 4 bits); every
  other code keeps its index and value. Li, Chen and Zhu, "Memory Efficient
  Optimizers with 4-bit States" (NeurIPS 2023, arXiv:2309.01507), the
  "zero-point problem": a second moment far below its block's largest rounds
  to 0, the next step divides by ``sqrt((1 - decay) g**2)`` alone and is up
  to ``1 / sqrt(1 - decay)`` times too large; their fix is a map without 0.
  An all-zero block still dequantizes to 0 (its scale is 0).
  """
  total_bits = bits
  max_exponent_bits = 7 if bits == 8 else 3
  non_sign_bits = total_bits - 1
  data: list[float] = []
  first = 0 if signed or unsigned_zero else -1
  for i in range(first, max_exponent_bits):
    exponent = i + non_sign_bits - max_exponent_bits + (0 if signed else 1)
    boundaries = _linspace_float32(0.1, 1.0, 2**exponent + 1)
    means = (boundaries[:-1] + boundaries[1:]) / 2.0
    scale = 10.0 ** (-(max_exponent_bits - 1) + i)
    # float32 products, as torch multiplies a float32 tensor by a Python float.
    data += (np.float32(scale) * means).tolist()
    if signed:
      data += (-np.float32(scale) * means).tolist()
  data += [0.0, 1.0] if first == 0 else [1.0]
  data += [0.0] * (2**total_bits - len(data))
  return np.sort(np.asarray(data, np.float32))


def _linspace_float32(start: float, end: float, steps: int) -> np.ndarray:
  """``torch.linspace(start, end, steps, dtype=torch.float32)``, to the bit.

  PyTorch's CPU kernel takes a float32 step and fills the first half from
  ``start`` and the second from ``end``, one rounding each (a fused
  multiply-add); ``np.linspace`` rounds differently in a few places.
  """
  lo, hi = np.float32(start), np.float32(end)
  step = np.float64((hi - lo) / np.float32(steps - 1))
  i = np.arange(steps, dtype=np.float64)
  half = steps // 2
  values = np.where(i < half, np.float64(lo) + step * i, np.float64(hi) - step * (steps - 1 - i))
  return values.astype(np.float32)


def quantize(
  x: jax.Array,
  *,
  bits: int,
  block_size: int,
  signed: bool,
  layout: str = 'last_axis',
  rounding: str = 'nearest',
  unsigned_zero: bool,
  map: str = 'dynamic',
  tables: Tables | None = None,
) -> QuantizedArray:
  """Codes of ``x`` (float32) with one absmax scale per block (see :func:`quantized`)."""
  _check_map('quantize', map, bits, rounding, unsigned_zero)
  if layout == 'flat':
    flat = quantize(
      x.reshape(-1),
      bits=bits,
      block_size=block_size,
      signed=signed,
      rounding=rounding,
      unsigned_zero=unsigned_zero,
      map=map,
      tables=tables,
    )
    return dataclasses.replace(
      flat, codes=flat.codes.reshape(x.shape), shape=tuple(x.shape), layout=layout
    )
  shape = tuple(x.shape)
  n = shape[-1]
  b = _block(n, block_size)
  n_blocks = _ceil_div(n, b)
  padded = x.astype(jnp.float32)
  if n_blocks * b != n:
    padded = jnp.pad(padded, [(0, 0)] * (len(shape) - 1) + [(0, n_blocks * b - n)])
  blocks = padded.reshape(shape[:-1] + (n_blocks, b))
  if tables is None:
    tables = lookup_tables(bits, signed, unsigned_zero=unsigned_zero, rounding=rounding, map=map)
  scale = jnp.max(jnp.abs(blocks), axis=-1)
  normalized = blocks * jnp.where(scale > 0, 1 / jnp.where(scale > 0, scale, 1), 0)[..., None]
  if map == 'float':
    codes = _float_codes(normalized, signed)
  elif rounding == 'bitsandbytes':
    # csrc/cpu_ops.cpp, norm_to_lut_index: float32 throughout, truncation.
    bins = (jnp.clip(normalized, -1.0, 1.0) + 1.0) * 0.5 * float(_LUT_SIZE - 1) + 0.5
    codes = tables['lut'][bins.astype(jnp.int32)]
    codes = jnp.where(scale[..., None] > 0, codes, jnp.uint8(0))
  else:
    codes = _nearest_codes(normalized, bits, signed, unsigned_zero=unsigned_zero, tables=tables)
  codes = codes.reshape(shape[:-1] + (n_blocks * b,))[..., :n]
  if bits == 4:
    codes = codes[..., 0::2] | (codes[..., 1::2] << 4)
  return QuantizedArray(
    codes,
    scale,
    shape,
    bits,
    block_size,
    signed,
    layout,
    rounding,
    unsigned_zero=unsigned_zero,
    map=map,
  )


def requantize(
  value: jax.Array, like: QuantizedArray, tables: Tables | None = None
) -> QuantizedArray:
  """``value`` quantized as ``like`` is: same bits, blocks, map, layout and rounding."""
  return quantize(
    value,
    bits=like.bits,
    block_size=like.block_size,
    signed=like.signed,
    layout=like.layout,
    rounding=like.rounding,
    unsigned_zero=like.unsigned_zero,
    map=like.map,
    tables=tables,
  )


_LUT_SIZE = 65536

# The nearest-code lookup buckets float32 values by their sign, exponent and
# top 8 mantissa bits (a relative width of 2**-8). No bucket holds more than
# one midpoint of the 8- or 4-bit maps (the lookup does K compares for K per
# bucket), so a table of counts and one compare find the code that an 8-step
# binary search would, about 6x faster on XLA:CPU.
_KEY_SHIFT = 15
_KEY_RANGE = 2.0  # buckets cover [-2, 2]; a value beyond clips to the end buckets


def _float_key(v: Any) -> Any:
  """An int32 that orders like the float32 ``v`` (-0.0 just below +0.0); NumPy or JAX."""
  if isinstance(v, np.ndarray):
    host = v.astype(np.float32).view(np.int32)
    return np.where(host < 0, host ^ np.int32(0x7FFFFFFF), host)
  bits = jax.lax.bitcast_convert_type(v.astype(jnp.float32), jnp.int32)
  return jnp.where(bits < 0, bits ^ jnp.int32(0x7FFFFFFF), bits)


@functools.cache
def _bucket_table(
  bits: int, signed: bool, unsigned_zero: bool
) -> tuple[np.ndarray, np.ndarray, int, int]:
  """Midpoints, the count of midpoints below each bucket, the first bucket, and K.

  K is the most midpoints any bucket holds: the compares a lookup needs.
  """
  table = code_map(bits, signed, unsigned_zero=unsigned_zero)
  midpoints = ((table[1:] + table[:-1]) / 2).astype(np.float32)
  ends = np.array([-_KEY_RANGE, _KEY_RANGE], np.float32)
  first, last = (_float_key(ends) >> _KEY_SHIFT).tolist()
  buckets = np.arange(first, last + 1, dtype=np.int64)
  mid_keys = _float_key(midpoints).astype(np.int64)
  below = np.searchsorted(mid_keys, buckets << _KEY_SHIFT, side='left')
  per_bucket = np.bincount((mid_keys >> _KEY_SHIFT) - first, minlength=len(buckets))
  return midpoints, below.astype(np.int32), first, int(per_bucket.max())


def _nearest_codes(
  v: jax.Array, bits: int, signed: bool, *, unsigned_zero: bool, tables: Tables | None = None
) -> jax.Array:
  """The number of code-map midpoints strictly below each ``v``: its nearest code.

  Equal to ``jnp.searchsorted(midpoints, v)`` for every float32 (ties, at a
  midpoint exactly, go to the lower code), without its binary search.
  """
  midpoints, below, first, k = _bucket_table(bits, signed, unsigned_zero)
  if tables is None:
    tables = lookup_tables(bits, signed, unsigned_zero=unsigned_zero)
  bucket = jnp.clip((_float_key(v) >> _KEY_SHIFT) - first, 0, len(below) - 1)
  codes = tables['below'][bucket].astype(jnp.int32)
  mids = tables['midpoints']
  start = codes
  for j in range(k):
    index = start + j
    above = (index < len(midpoints)) & (mids[jnp.minimum(index, len(midpoints) - 1)] < v)
    codes = codes + above.astype(jnp.int32)
  return codes.astype(jnp.uint8)


def lookup_tables(
  bits: int,
  signed: bool,
  *,
  unsigned_zero: bool,
  rounding: str = 'nearest',
  map: str = 'dynamic',
) -> Tables:
  """A map's lookup tables as arrays: the code map, its midpoints, the bucket counts, bnb's table.

  ``map='float'`` has none (an empty dict): its codes are read and written
  with arithmetic (:func:`float_map`).

  Made once per step and passed to each leaf's function as an argument: an
  array made inside a function that ``jit`` traces once per leaf shape is a
  constant of each, and a program with a hundred leaf shapes then carried a
  hundred copies (about 1 MB each; 160 MB of program text, compiled in 6x
  the float32 step's time).
  """
  if map == 'float':
    return {}
  midpoints, below, _, _ = _bucket_table(bits, signed, unsigned_zero)
  out = {
    'map': jnp.asarray(code_map(bits, signed, unsigned_zero=unsigned_zero)),
    'midpoints': jnp.asarray(midpoints),
    # At most 255 midpoints lie below any bucket: a byte each, a quarter of int32's cache.
    'below': jnp.asarray(below.astype(np.uint8)),
  }
  if rounding == 'bitsandbytes':
    out['lut'] = jnp.asarray(_bnb_lut(bits, signed, unsigned_zero))
  return out


@functools.cache
def _bnb_lut(bits: int, signed: bool, unsigned_zero: bool) -> np.ndarray:
  """bnb's CPU lookup table (csrc/cpu_ops.cpp, ``build_quantize_lut``), float32 as there.

  Bin ``i`` stands for ``-1 + 2 i / 65535`` and gets the number of code-map
  midpoints below it: the code whose midpoint interval holds that value.
  """
  table = code_map(bits, signed, unsigned_zero=unsigned_zero)
  midpoints = np.float32(0.5) * (table[:-1] + table[1:])
  i = np.arange(_LUT_SIZE, dtype=np.float32)
  values = np.float32(-1.0) + (np.float32(2.0) * i) / np.float32(_LUT_SIZE - 1)
  return np.searchsorted(midpoints, values, side='left').astype(np.uint8)


@functools.cache
def float_map(signed: bool) -> np.ndarray:
  """The value of each code of ``quantized(map='float')``, indexed by code (float32).

  A tapered floating-point code: the dynamic tree of Dettmers et al. in base
  4, with binary fractions. A magnitude's ``n`` bits (8 unsigned, 7 signed)
  with ``k`` leading zeros cover ``[4**-(k + 1), 4**-k)``: of its ``2**(n -
  k - 1)`` codes, the first half step evenly through the lower power of 2,
  the second half through the upper. So each power of 2 in [1/4, 1) holds
  ``2**(n - 2)`` codes (64 unsigned, 32 signed: steps of 1/128 to 1/64 of
  the value unsigned, 1/64 to 1/32 signed), each lower pair half
  as many, down to code 1, ``4**-n``. The largest code (all ones) is 1, a
  block's largest element. Code 0 is ``4**-9`` unsigned (no 0, as with
  ``unsigned_zero=False``) and 0 signed, whose bit 7 negates the value.
  The smallest positive values are thus ``2**-18`` (``nu``) and ``2**-14``
  (``mu``, the momentum buffer) of the block's largest, where the dynamic
  map reaches ``0.55e-7`` and ``0.55e-6``. A code's float32 bits are linear in
  the code within each power of 4, so reading one is a shift and an add,
  and rounding to the nearest adds half a step to the value's bits and
  truncates (ties go up; the codes at the two ends by comparison).
  """
  with jax.ensure_compile_time_eval():
    return np.asarray(_float_values(jnp.arange(256, dtype=jnp.uint8), signed))


def _float_values(codes: jax.Array, signed: bool) -> jax.Array:
  """Each code's value under the float map (see :func:`float_map`)."""
  c = codes.astype(jnp.int32)
  if not signed:
    return _tapered_values(c, 8, 4.0**-9)
  value = _tapered_values(c & 127, 7, 0.0)
  return jnp.where(c > 127, -value, value)


def _tapered_values(c: jax.Array, n: int, bottom: float) -> jax.Array:
  """The value of each ``n``-bit magnitude code ``c`` (int32); ``bottom``: code 0's."""
  length = jnp.maximum(32 - jax.lax.clz(c), 1)  # bit length; k = n - length leading zeros
  # Linear in the code within [4**-(k + 1), 4**-k): 2**(length - 2) codes per power of 2.
  bits = ((c - (1 << (length - 1))) << (25 - length)) + ((125 - 2 * n + 2 * length) << 23)
  value = jax.lax.bitcast_convert_type(bits, jnp.float32)
  value = jnp.where(c == (1 << n) - 1, jnp.float32(1), value)
  return jnp.where(c == 0, jnp.float32(bottom), value)


def _float_codes(v: jax.Array, signed: bool) -> jax.Array:
  """The nearest float-map code of each ``v`` in [-1, 1] (see :func:`float_map`)."""
  v = v.astype(jnp.float32)
  if not signed:
    return _tapered_codes(v, 8, 4.0**-9).astype(jnp.uint8)
  magnitude = _tapered_codes(jnp.abs(v), 7, 0.0)
  sign = jnp.where((magnitude > 0) & jnp.signbit(v), 128, 0)
  return (magnitude | sign).astype(jnp.uint8)


def _tapered_codes(a: jax.Array, n: int, bottom: float) -> jax.Array:
  """The nearest ``n``-bit magnitude code (int32) of each ``a >= 0``; ``bottom``: code 0's value.

  Within ``[4**-(k + 1), 4**-k)`` a code's value bits are linear in the code
  and every power of 2 starts on a code, so adding half a step to ``a``'s
  bits and truncating gives the nearest; a carry to the next power of 4
  lands on its first code. Codes 0, 1 and 2 (``4**-n`` and ``4**-(n - 1)``
  have no code between them) and the top code, 1, are chosen by comparison.
  """
  top = (1 << n) - 1
  bits = jax.lax.bitcast_convert_type(a, jnp.int32)
  # The power of 4 (clamped to the codes'; -0.0, whose bits are negative, lies past the bottom).
  k = jnp.clip((126 - (bits >> 23)) >> 1, 0, n - 1)
  shift = 25 - n + k
  code = ((bits - ((125 - 2 * k) << 23) + (1 << (shift - 1))) >> shift) + (1 << (n - 1 - k))
  one, two = 4.0**-n, 4.0 ** -(n - 1)
  low = jnp.where(
    a > jnp.float32((one + two) / 2), 2, jnp.where(a > jnp.float32((bottom + one) / 2), 1, 0)
  )
  code = jnp.where(a < jnp.float32(two), low, code)
  # The top code stands for 1, not for the next step: the nearer of 1 and the code below it.
  below_top = 1 - 2.0 ** -(n - 2)
  near = jnp.where(a > jnp.float32((1 + below_top) / 2), top, top - 1)
  code = jnp.where(code >= top, near, code)
  return jnp.where(a >= 1, top, code)


def quantizable(param: Any, spec: Quantized) -> bool:
  """Whether a param of this shape and dtype gets quantized state under ``spec``."""
  shape = np.shape(param)
  if math.prod(shape) < max(spec.min_size, 1) or not shape:
    return False
  if spec.bits == 4 and shape[-1] % 2:
    return False
  return True


def init(
  param: Any, value: jax.typing.ArrayLike, spec: Quantized, *, signed: bool
) -> QuantizedArray:
  """Quantized state filled with ``value``, sharded like ``param`` under ``jit``.

  The codes and scales are computed from ``param`` (a select whose two
  branches are equal) so that XLA's sharding propagation has a data path to
  follow, as for float state.
  """
  shape = tuple(np.shape(param))
  signed = signed if spec.signed is None else spec.signed
  unsigned_zero = bool(spec.unsigned_zero)
  if spec.map == 'float':
    table = float_map(signed)
  else:
    table = code_map(spec.bits, signed, unsigned_zero=unsigned_zero)
  # A nonzero fill is its own block scale (code for 1.0); zero is code for 0,
  # or the smallest code of a map without 0: either times the scale 0 is 0
  # (bnb's rounding: code 0 for a zero block, as its zero-filled uint8 state).
  one, zero = (int(np.argmin(np.abs(table - v))) for v in (1.0, 0.0))
  if spec.rounding == 'bitsandbytes':
    zero = 0
  code = jnp.where(jnp.asarray(value) != 0, one, zero).astype(jnp.uint8)
  codes_like = param if spec.bits == 8 else param[..., 0::2]
  if spec.layout == 'flat':
    b = _block(math.prod(shape), spec.block_size)
    scale_like = jnp.reshape(param, -1)[::b]
  else:
    b = _block(shape[-1], spec.block_size)
    scale_like = param[..., ::b]
  if isinstance(param, jax.core.Tracer):
    codes = jnp.where(jnp.isnan(codes_like), code, code).astype(jnp.uint8)
    scale = jnp.where(jnp.isnan(scale_like), value, value).astype(jnp.float32)
  else:
    codes = jnp.full_like(codes_like, code, dtype=jnp.uint8)
    scale = jnp.full_like(scale_like, value, dtype=jnp.float32)
  if spec.bits == 4:
    codes = codes | (codes << 4)
  return QuantizedArray(
    codes,
    scale,
    shape,
    spec.bits,
    spec.block_size,
    signed,
    spec.layout,
    spec.rounding,
    unsigned_zero=unsigned_zero,
    map=spec.map,
  )


@functools.partial(
  jax.tree_util.register_dataclass,
  data_fields=['codes', 'scale', 'dense'],
  meta_fields=['spec', 'signed'],
)
@dataclasses.dataclass(frozen=True)
class QuantizedTree:
  """One moment of a whole params tree stored by a :func:`quantized` spec.

  Three trees with the params' structure, one array (or ``None``) at each
  param: ``codes`` (uint8; see :class:`QuantizedArray`) and ``scale``
  (float32 block scales) where the param is large enough to quantize, and
  ``dense`` (float32) where it is not; the other two hold ``None`` there. The
  spec and the code map (``signed``) are static. This is the layout of
  Optax's factored Adafactor state (``v_row``, ``v_col``, ``v``), for the
  same reason: every param position holds plain arrays, so frameworks that
  wrap each state array (Flax NNX's ``nnx.Optimizer`` keeps one variable per
  array) and checkpointers see nothing but arrays.
  """

  codes: Any
  scale: Any
  dense: Any
  spec: Quantized
  signed: bool

  def leaves(self, treedef: Any) -> list[Any]:
    """One entry per leaf of ``treedef``: a :class:`QuantizedArray` or a float32 array."""
    codes, scale, dense = (treedef.flatten_up_to(t) for t in (self.codes, self.scale, self.dense))
    return [
      d if c is None else self._leaf(c, s) for c, s, d in zip(codes, scale, dense, strict=True)
    ]

  def replace_leaves(self, treedef: Any, leaves: list[Any]) -> QuantizedTree:
    """The same spec and map holding ``leaves`` (as :meth:`leaves` returns them)."""
    quantized = [is_quantized(x) for x in leaves]
    codes = [x.codes if q else None for x, q in zip(leaves, quantized)]
    scale = [x.scale if q else None for x, q in zip(leaves, quantized)]
    dense = [None if q else x for x, q in zip(leaves, quantized)]
    return QuantizedTree(
      treedef.unflatten(codes),
      treedef.unflatten(scale),
      treedef.unflatten(dense),
      self.spec,
      self.signed,
    )

  def dequantize(self) -> Any:
    """The float32 values, a tree with the params' structure (full size: for inspection)."""
    return jax.tree.map(
      lambda d, c, s: d if c is None else self._leaf(c, s).dequantize(),
      self.dense,
      self.codes,
      self.scale,
      is_leaf=lambda x: x is None,
    )

  def shapes(self) -> Any:
    """The logical shape and dtype (float32) of every leaf, as ``jax.ShapeDtypeStruct``."""
    return jax.tree.map(
      # None in both trees: a None in the params themselves (a filtered model's functions).
      lambda d, c: (
        None
        if d is None and c is None
        else jax.ShapeDtypeStruct(np.shape(d) if c is None else self._shape(c), jnp.float32)
      ),
      self.dense,
      self.codes,
      is_leaf=lambda x: x is None,
    )

  def _shape(self, codes: Any) -> tuple[int, ...]:
    shape = tuple(np.shape(codes))
    return shape[:-1] + (2 * shape[-1],) if self.spec.bits == 4 else shape

  def _leaf(self, codes: Any, scale: Any) -> QuantizedArray:
    spec = self.spec
    return QuantizedArray(
      codes,
      scale,
      self._shape(codes),
      spec.bits,
      spec.block_size,
      self.signed,
      spec.layout,
      spec.rounding,
      unsigned_zero=bool(spec.unsigned_zero),
      map=spec.map,
    )


# Elements of one leaf that a step processes at once (see :func:`map_chunks`):
# its temporaries are a few float32 copies of this many elements (1.75 MiB
# for a plain 8-bit step). On a 2-core CPU, a 2**24-element plain 8-bit step
# took 105 / 83 / 81 / 101 ms at 2**16 / 17 / 18 / 19 (one process, median of 5).
CHUNK_ELEMENTS = 2**17
# A chunk size no leaf reaches: the whole leaf as one chunk.
_WHOLE = 2**62


def view_shape(q: QuantizedArray, chunk_elements: int | None = None) -> tuple[int, ...]:
  """The shape under which ``q``'s blocks run along the last axis, leading axes to chunk first.

  ``last_axis`` leaves of two or more dimensions are their own view, unless
  their leading axes cannot divide them into chunks of ``chunk_elements``
  (:func:`chunk_counts`; a few rows of a long last axis, e.g. ``(8, 2**21)``)
  and the last axis is two or more blocks exactly: then it is split into
  ``(blocks, block_size)`` where that cuts it finer, so that its blocks can
  be chunked as rows are. A 1-D leaf (or a ``flat`` one, flattened) whose
  length is a multiple of the block is ``(blocks, block_size)``; otherwise it
  is one row.
  """
  shape = q.shape
  if q.layout == 'flat':
    shape = (math.prod(shape),)
  n, b = shape[-1], q.block_size
  whole_blocks = n > b and n % b == 0
  if len(shape) > 1:
    per_chunk = math.prod(shape) // num_chunks(shape, chunk_elements)
    if per_chunk <= _chunk_elements(chunk_elements) or not whole_blocks:
      return shape
    split = shape[:-1] + (n // b, b)
    # Only where that cuts finer: another view of one chunk compiles to other
    # fusions, whose rounding can differ from the leaf's own view's.
    return split if math.prod(split) // num_chunks(split, chunk_elements) < per_chunk else shape
  return (n // b, b) if whole_blocks else (1, n)


def as_view(q: QuantizedArray, chunk_elements: int | None = None) -> QuantizedArray:
  """``q`` with its codes and scales reshaped to :func:`view_shape` (``last_axis`` layout)."""
  shape = view_shape(q, chunk_elements)
  n = shape[-1]
  codes_shape = shape[:-1] + (n // 2 if q.bits == 4 else n,)
  scale_shape = shape[:-1] + (_ceil_div(n, _block(n, q.block_size)),)
  return dataclasses.replace(
    q,
    codes=q.codes.reshape(codes_shape),
    scale=q.scale.reshape(scale_shape),
    shape=shape,
    layout='last_axis',
  )


def from_view(view: QuantizedArray, like: QuantizedArray) -> QuantizedArray:
  """Inverse of :func:`as_view`: ``view``'s codes and scales stored as ``like``'s."""
  return dataclasses.replace(
    like,
    codes=view.codes.reshape(like.codes.shape),
    scale=view.scale.reshape(like.scale.shape),
  )


def _chunk_elements(chunk_elements: int | None) -> int:
  return CHUNK_ELEMENTS if chunk_elements is None else chunk_elements


def chunk_counts(shape: tuple[int, ...], chunk_elements: int | None = None) -> tuple[int, ...]:
  """How many chunks :func:`map_chunks` cuts each leading axis of a view of ``shape`` into.

  Axis by axis from the first, each count is the smallest divisor of the
  axis that brings a chunk to at most ``chunk_elements`` elements (the
  largest where none does, the next axis then dividing further), keeping the
  share of every chunk along the axis a multiple of the axis's power-of-two
  part up to 8: an axis sharded evenly over up to 8 devices splits evenly in
  every chunk. Trailing counts of 1 are left out (``()``: one chunk).
  """
  chunk_elements = _chunk_elements(chunk_elements)
  per_chunk = math.prod(shape)
  counts: list[int] = []
  for d in shape[:-1]:
    if per_chunk <= chunk_elements:
      break
    keep = math.gcd(d, 8)
    best = 1
    for c in range(1, d // keep + 1):
      if (d // keep) % c:
        continue
      best = c
      if per_chunk // c <= chunk_elements:
        break
    counts.append(best)
    per_chunk //= best
  while counts and counts[-1] == 1:
    counts.pop()
  return tuple(counts)


def num_chunks(shape: tuple[int, ...], chunk_elements: int | None = None) -> int:
  """How many chunks :func:`map_chunks` divides a view of ``shape`` into (:func:`chunk_counts`)."""
  return math.prod(chunk_counts(shape, chunk_elements))


def chunk_width(q: QuantizedArray, chunk_elements: int | None = None) -> int | None:
  """The columns :func:`map_column_chunks` steps at once, or None where rows divide the step.

  A 1-D leaf (or a ``flat`` one) longer than a block but not a multiple of
  it is one row (:func:`view_shape`) that no reshape divides into rows of
  whole blocks: it is stepped in runs of whole blocks, half of
  ``chunk_elements`` each (a run holds its slabs twice, as read and rotated)
  but at least two blocks where the row has two, the last run short.
  """
  chunk_elements = _chunk_elements(chunk_elements)
  n, b = view_shape(q, chunk_elements)[-1], q.block_size
  # (A 1-D leaf of whole blocks has a view of rows of one block: n == b.)
  if (len(q.shape) > 1 and q.layout != 'flat') or n <= b:
    return None
  # Two blocks at least: a run of one block compiles to other fusions, whose
  # rounding differs (which products become fused multiply-adds).
  return min(n // b * b, max(2 * b, chunk_elements // 2 // b * b))


# Leaves of one chunk or less are stepped together, up to this many chunks'
# elements at a time (see :func:`leaf_groups`).
GROUP_CHUNKS = 8


def leaf_groups(
  xs: list[jax.Array], stored: list[list[Any]], inputs: list[list[jax.Array | None]]
) -> list[list[int]]:
  """Which leaves :func:`join` steps as one: lists of leaf indices, every leaf in one list.

  XLA compiles each leaf's quantized step into about two dozen kernels (the
  lookups, the block maxima, the requantization of each moment), five times
  a float32-state step's, and compile time grows with the kernels: a tree of
  many small leaves took 6-7x the float32-state step's time to compile. Small
  leaves stepped alike are therefore joined: their rows of whole blocks are
  concatenated into one leaf of about :data:`GROUP_CHUNKS` chunks (a few
  more where :func:`join` pads rows), stepped in chunks, and split again
  (:func:`join`, :func:`split`). Each element's arithmetic is the same; only
  the leaves' order in memory changes, and the join and split are copies.
  One exception: a leaf of one block whose leading axes are all 1, e.g.
  ``(1, 256)``, with coupled weight decay. Alone, XLA rounds its decayed sum
  otherwise (a few last bits, unlike ``optax.add_decayed_weights``); joined,
  it is rounded as ``optax.add_decayed_weights`` rounds it.

  Joined: leaves of at most one chunk whose moments are all quantized with
  round-to-nearest, in blocks along a last axis of whole blocks, with equal
  block width, code maps, gradient and input dtypes. Only in a process with
  one device: concatenating leaves sharded over devices would move their
  entries between devices, and under ``jit`` a leaf's sharding is not known
  when the step is traced. ``stored``: each leaf's moments; ``inputs``: each
  leaf's other per-element arrays (or None).
  """
  if jax.device_count() != 1:
    return [[i] for i in range(len(xs))]
  groups: list[list[int]] = []
  open_groups: dict[Any, tuple[list[int], int]] = {}
  for i, (x, moments, ins) in enumerate(zip(xs, stored, inputs, strict=True)):
    key = _group_key(x, moments, ins)
    if key is None:
      groups.append([i])
      continue
    size = math.prod(x.shape)
    members, total = open_groups.get(key, (None, 0))
    if members is None or total + size > GROUP_CHUNKS * CHUNK_ELEMENTS:
      members, total = [], 0
      groups.append(members)
    members.append(i)
    open_groups[key] = (members, total + size)
  return groups


def _group_key(x: jax.Array, moments: list[Any], inputs: list[jax.Array | None]) -> Any:
  """What leaves stepped together must share (:func:`leaf_groups`), or None for a leaf stepped alone."""
  if not moments or not all(is_quantized(m) for m in moments):
    return None
  if any(m.layout != 'last_axis' or m.rounding != 'nearest' for m in moments):
    return None
  shape = moments[0].shape
  b = _block(shape[-1], moments[0].block_size)
  if math.prod(shape) > CHUNK_ELEMENTS or shape[-1] % b:
    return None
  maps = tuple((m.bits, m.block_size, m.signed, m.unsigned_zero, m.map) for m in moments)
  return (
    b,
    jnp.dtype(x.dtype),
    maps,
    tuple(None if a is None else jnp.dtype(a.dtype) for a in inputs),
  )


def join(
  xs: list[jax.Array],
  stored: list[list[QuantizedArray]],
  inputs: list[list[jax.Array | None]],
  after: jax.Array | None = None,
) -> tuple[jax.Array, list[QuantizedArray], list[jax.Array | None]]:
  """The leaves of one :func:`leaf_groups` group as one leaf of rows of one block.

  Each leaf's rows of whole blocks (its view ``(-1, b)``, its scales one per
  row) are concatenated in order. A group of more than one chunk gets rows
  of zeros (scale 0, value 0) up to a multiple of 8 times its chunks, so that
  :func:`chunk_counts` cuts it into chunks of at most ``CHUNK_ELEMENTS``.

  ``after``: the joined output of the group stepped before, which every
  concatenated part is made to wait for with a zero
  OR-ed into its bits (:func:`_or_bits`), values unchanged. XLA orders
  kernels only by data dependence, and without it XLA:CPU scheduled every
  group's concatenations before the first group's step, holding all their
  copies at once: temporaries that grew with the number of leaves.
  """
  b = _block(stored[0][0].shape[-1], stored[0][0].block_size)
  rows = sum(math.prod(x.shape) for x in xs) // b
  chunks = _ceil_div(rows * b, CHUNK_ELEMENTS)
  padded = rows if chunks == 1 else _ceil_div(rows, 8 * chunks) * 8 * chunks

  # From the previous group's first element: a 0 that XLA cannot fold.
  zero = None if after is None else _sign_zero(after.reshape(-1)[0].astype(jnp.float32))

  def cat(arrays: list[Any], width: int) -> jax.Array:
    parts = [a.reshape(-1, width) for a in arrays]
    if zero is not None:
      parts = [_or_bits(a, zero) for a in parts]
    if padded > rows:
      parts.append(jnp.zeros((padded - rows, width), arrays[0].dtype))
    return jnp.concatenate(parts)

  moments = []
  for j, like in enumerate(stored[0]):
    width = b if like.bits == 8 else b // 2
    codes = cat([s[j].codes for s in stored], width)
    scale = cat([s[j].scale for s in stored], 1)
    moments.append(dataclasses.replace(like, codes=codes, scale=scale, shape=(padded, b)))
  ins = [
    None if inputs[0][j] is None else cat([i[j] for i in inputs], b) for j in range(len(inputs[0]))
  ]
  return cat(xs, b), moments, ins


def split(
  out: jax.Array, new: list[QuantizedArray], xs: list[jax.Array], stored: list[list[QuantizedArray]]
) -> list[tuple[jax.Array, list[QuantizedArray]]]:
  """Inverse of :func:`join` for the step's output and new moments: one pair per leaf."""
  b = out.shape[-1]
  results = []
  start = 0
  for x, moments in zip(xs, stored, strict=True):
    rows = math.prod(x.shape) // b
    part = slice(start, start + rows)
    start += rows
    results.append(
      (
        out[part].reshape(x.shape),
        [
          dataclasses.replace(
            m,
            codes=n.codes[part].reshape(m.codes.shape),
            scale=n.scale[part].reshape(m.scale.shape),
            shape=m.shape,
          )
          for n, m in zip(new, moments, strict=True)
        ],
      )
    )
  return results


def map_moments(
  fn: Any,
  x: jax.Array,
  moments: list[QuantizedArray],
  moment_tables: list[Tables] | None = None,
  *,
  chunked: bool = True,
  inputs: tuple[jax.Array, ...] = (),
) -> tuple[jax.Array, list[QuantizedArray]]:
  """``fn(x, *values, *inputs) -> (out, *new values)`` on the float32 values of ``moments``.

  Each chunk of the leading axes (:func:`map_chunks`), or run of whole
  blocks of a 1-D leaf (:func:`map_column_chunks`), is dequantized, stepped
  by ``fn`` and requantized, so no full-size float32 copy of a moment exists;
  ``chunked=False`` steps the whole leaf at once. ``out`` has ``x``'s shape
  and dtype; the new moments are stored as ``moments`` are.
  ``moment_tables``: each moment's :func:`lookup_tables`, made by the caller
  once per step. ``inputs``: arrays of ``x``'s shape that ``fn`` reads (e.g.
  the param), passed chunk by chunk: an elementwise product of one with ``x``
  made before the loop would be a full-size buffer of its own.
  """
  if moment_tables is None:
    moment_tables = [m.lookup_tables() for m in moments]
  # Stepped whole, a leaf keeps its own view (one chunk of any size).
  chunk_elements = None if chunked else _WHOLE
  views = [as_view(m, chunk_elements) for m in moments]
  shape = view_shape(moments[0], chunk_elements)

  def chunk(x_c: jax.Array, *rest: jax.Array, valid: jax.Array | None = None) -> list[jax.Array]:
    stored, inputs_c = rest[: 2 * len(views)], rest[2 * len(views) :]
    old = [
      dataclasses.replace(v, codes=c, scale=s, shape=x_c.shape)
      for v, c, s in zip(views, stored[0::2], stored[1::2])
    ]
    # The new moments once, for the block maxima and the codes both: without
    # the barrier XLA recomputes them (dequantization included) in each
    # consumer's fusion; 114 -> 86 ms for a 2**24-element plain 8-bit step.
    values = _dequantize_all(old, moment_tables)
    out, *new = jax.lax.optimization_barrier(fn(x_c, *values, *inputs_c))
    if valid is not None:  # columns outside this run's part: 0, as quantize pads a block
      new = [jnp.where(valid, v, 0) for v in new]
    requantized = [requantize(v, q, t) for v, q, t in zip(new, old, moment_tables)]
    return [out] + [a for q in requantized for a in (q.codes, q.scale)]

  carried = [x.reshape(shape)] + [a for v in views for a in (v.codes, v.scale)]
  read = [a.reshape(shape) for a in inputs]
  width = chunk_width(moments[0]) if chunked else None
  counts = chunk_counts(shape, chunk_elements)
  if not chunked:
    results = chunk(*carried, *read)
  elif width is not None:
    per_code = 2 if views[0].bits == 4 else 1
    steps = [1] + [d for v in views for d in (per_code, v.block_size)] + [1] * len(read)
    results = map_column_chunks(chunk, width, carried, read, steps)
  else:
    # A one-chunk step with bnb's rounding takes the gradient as it is (see
    # map_chunks; rmsprop_optax.rmsprop steps bnb-rounded momentum whole).
    opaque_entry = not is_bitsandbytes(moments[0])
    results = map_chunks(chunk, counts, carried, read, opaque_entry=opaque_entry)
  new = [
    from_view(dataclasses.replace(v, codes=c, scale=s), m)
    for v, m, c, s in zip(views, moments, results[1::2], results[2::2])
  ]
  return results[0].reshape(x.shape), new


def map_chunks(
  fn: Any,
  counts: tuple[int, ...],
  carried: list[jax.Array],
  inputs: list[jax.Array] | None = None,
  *,
  opaque_entry: bool = True,
) -> list[jax.Array]:
  """``fn(*carried, *inputs)`` computed chunk by chunk, writing ``carried`` in place.

  ``inputs`` are only read. Every array has the same leading axes, and
  ``counts`` (:func:`chunk_counts`) says how many chunks the first
  ``len(counts)`` of them are cut into: along an axis of ``d`` entries cut
  into ``k``, a chunk holds entries ``i, i + k, i + 2 k, ...`` (the axis as
  ``(d // k, k)``, indexed on the second), and the chunks are every
  combination of such ``i``. ``fn`` maps slabs to new slabs of the
  ``carried`` arrays' shapes and dtypes, entry by entry of the leading axes
  independently. The loop writes each result over the slab it read, so XLA
  updates the carried buffers in place and holds one chunk's temporaries,
  whatever the leaf's size. Strided rather than contiguous chunks: an axis
  sharded in contiguous blocks over devices gives each device an equal share
  of every chunk, so no device waits and no collective moves entries between
  them.

  ``carried``: the step's output (written over the gradient), then uint8
  codes and float32 block scales. XLA still recomputes the new moments'
  arithmetic (from the gathered code values and the old scales) in each
  fusion that needs them, so every read of an old slab must come before the
  write over it, or XLA copies the whole buffer each iteration:
  :func:`_write_in_order` writes the codes, then the output, then the scales.
  Writing the scales with the codes cost two copies of every scale array per
  chunk, 8% of a 2**24-element 8-bit step.
  """
  if not counts:
    # The first carry enters and leaves opaque, as it does through the loop's
    # buffer below, so that the arithmetic around this leaf's step (the
    # learning rate, the momentum, apply_updates) is rounded alike (no fused
    # multiply-add across it) whether the leaf is one chunk or many.
    # ``opaque_entry=False`` takes the first carry as it is: bitsandbytes'
    # second moment, whose rounding is bnb's with the gradient as it is (an
    # opaque entry moved 17 block scales of a 64 x 256 leaf).
    # The loops keep bnb's rounding.
    first = _after(carried[0], carried[1:]) if opaque_entry else carried[0]
    new = list(fn(first, *carried[1:], *(inputs or [])))
    return [_after(new[0], new[1:])] + new[1:]
  k = len(counts)
  leading = carried[0].shape[:k]
  # Each cut axis as (d // c, c), indexed on the second; an axis cut into
  # single entries (c == d) or not at all (c == 1) stays one axis, indexed or
  # whole: a reshape that adds an axis of size 1 before a longer one is not a
  # bitcast to XLA:CPU, which then copies the whole array into that layout.
  split_shape = [n for d, c in zip(leading, counts) for n in ((d // c, c) if 1 < c < d else (d,))]

  def split(x: jax.Array) -> jax.Array:
    return x.reshape(tuple(split_shape) + x.shape[k:])

  carried_split = [split(x) for x in carried]
  read = [split(x) for x in inputs or []]

  def body(c: jax.Array, state: list[jax.Array]) -> list[jax.Array]:
    # Chunk c's index along each cut axis (the last cut axis varies fastest).
    index = [(c // math.prod(counts[j + 1 :])) % counts[j] for j in range(k)]
    zero = jnp.zeros((), index[0].dtype)
    starts: list[jax.Array] = []
    sizes: list[int] = []
    for d, n, i in zip(leading, counts, index):
      if 1 < n < d:
        starts += [zero, i]
        sizes += [d // n, 1]
      else:
        starts.append(i if n == d else zero)
        sizes.append(d // n)

    def slab(i: int, x: jax.Array) -> jax.Array:
      rest = list(x.shape[len(sizes) :])
      part = jax.lax.dynamic_slice(x, starts + [zero] * len(rest), sizes + rest)
      return part.reshape([d // n for d, n in zip(leading, counts)] + rest)

    def write(i: int, s: jax.Array) -> jax.Array:
      x = state[i]
      rest = list(x.shape[len(sizes) :])
      return jax.lax.dynamic_update_slice(x, s.reshape(sizes + rest), starts + [zero] * len(rest))

    new = list(fn(*[slab(i, x) for i, x in enumerate(state + read)]))
    return _write_in_order(new, write, slab)

  out = jax.lax.fori_loop(0, math.prod(counts), body, carried_split)
  return [x.reshape(like.shape) for x, like in zip(out, carried)]


def map_column_chunks(
  fn: Any, width: int, carried: list[jax.Array], inputs: list[jax.Array], steps: list[int]
) -> list[jax.Array]:
  """:func:`map_chunks` for arrays of one row: runs of ``width`` columns, the last one short.

  ``width`` is a multiple of the block. Every run starts at a block's first
  element; the last holds what is left (its last block partial). Every run
  is the same loop iteration, so that the rounding of its arithmetic (which
  products XLA fuses into multiply-adds) is the same whatever the width: the
  last reads the ``width`` columns that end the row (``dynamic_slice``
  clamps its start), rotates them so that its own part comes first, steps
  them with the columns past the row's end set to 0 before requantizing (as
  :func:`quantize` pads a partial block), then rotates back and writes only
  its own part. Each run is written in place, so the step holds one run's
  temporaries, not the row's.

  ``steps``: for each array of ``carried + inputs``, the elements of the
  first carry per entry of its last axis (1 for the gradient and the param,
  2 for 4-bit codes, the block size for the scales). The runs are
  contiguous: a 1-D leaf sharded over devices has blocks that straddle the
  devices whatever divides it, and XLA gathers it.
  """
  n = carried[0].shape[-1]
  runs = _ceil_div(n, width)

  def body(c: jax.Array, state: list[jax.Array]) -> list[jax.Array]:
    arrays = state + inputs
    # Where run c's slab of each array starts (clamped to the row), and how far in its part does.
    sizes = [width // k for k in steps]
    starts = [jnp.minimum(c * m, x.shape[-1] - m) for x, m in zip(arrays, sizes)]
    shifts = [c * m - start for m, start in zip(sizes, starts)]

    def slab(i: int, x: jax.Array) -> jax.Array:
      return jax.lax.dynamic_slice_in_dim(x, starts[i], sizes[i], axis=-1)

    def write(i: int, value: jax.Array) -> jax.Array:
      return jax.lax.dynamic_update_slice_in_dim(state[i], value, starts[i], axis=-1)

    slabs = [slab(i, x) for i, x in enumerate(arrays)]
    rotated = [jnp.roll(x, -shift, axis=-1) for x, shift in zip(slabs, shifts)]
    valid = jnp.arange(width) < n - c * width  # this run's columns, in rotated order
    new = list(fn(*rotated, valid=valid))
    back = [jnp.roll(x, shift, axis=-1) for x, shift in zip(new, shifts)]
    kept = [
      jnp.where(jnp.arange(x.shape[-1]) >= shift, y, x) for x, y, shift in zip(slabs, back, shifts)
    ]
    return _write_in_order(kept, write, slab)

  return jax.lax.fori_loop(0, runs, body, list(carried))


def _write_in_order(new: list[jax.Array], write: Any, slab: Any) -> list[jax.Array]:
  """One chunk's results written in place: the codes, then the output, then the scales.

  ``new``: the output, then uint8 codes and float32 scales. ``write(i,
  value)`` writes carried array ``i``'s slab; ``slab(i, x)`` reads it back
  from ``x``. Each write is made to depend on the one before (:func:`_after`,
  :func:`_after_out`), because XLA orders fusions only by data dependence
  (see :func:`map_chunks`).
  """
  codes = {i: write(i, x) for i, x in enumerate(new) if x.dtype == jnp.uint8}
  out = write(0, _after(new[0], [slab(i, x) for i, x in codes.items()]))
  return [out] + [
    codes[i] if i in codes else write(i, _after_out(new[i], slab(0, out)))
    for i in range(1, len(new))
  ]


def _after_out(scale: jax.Array, out: jax.Array) -> jax.Array:
  """``scale`` to the bit, as a value XLA must compute after ``out`` (see :func:`_after`).

  Each block's scale takes a zero XLA cannot fold from an element of
  ``out`` (a sign bit, clamped at 0): the first of every ``ceil(n / blocks)``
  along the last axis, which is the block's own first element where the
  blocks divide the axis, so that the dependence stays on the device that
  holds the block.
  """
  first = out[..., :: _ceil_div(out.shape[-1], scale.shape[-1])]
  return _or_bits(scale, _sign_zero(first))


def _or_bits(x: jax.Array, zero: jax.Array) -> jax.Array:
  """``x`` with the int32 ``zero``'s bits OR-ed into its own: ``x`` to the bit, after ``zero``."""
  int_type = {1: jnp.int8, 2: jnp.int16, 4: jnp.int32, 8: jnp.int64}[x.dtype.itemsize]
  x_bits = jax.lax.bitcast_convert_type(x, int_type)
  return jax.lax.bitcast_convert_type(x_bits | zero.astype(int_type), x.dtype)


def _after(x: jax.Array, codes_and_scales: list[jax.Array]) -> jax.Array:
  """``x`` to the bit, as a value XLA must compute after ``codes_and_scales``.

  :func:`map_chunks` and :func:`map_column_chunks` write their first result
  (the step's output) over the slab of the first carry (the gradient) that
  the other results are computed from; in their loops it follows the
  written codes (:func:`_write_in_order`), in a one-chunk step the codes and
  scales. XLA fuses the slab's read into each consumer (the block maxima, the
  codes) and orders two fusions only by data dependence: a read left
  unordered against the in-place write of the same buffer makes it copy the
  whole buffer every iteration (a full-size temporary and a full-size copy
  per chunk). ``optimization_barrier`` does not order them on XLA:CPU. A zero
  it cannot fold does: the sign bits of the scales (maxima of magnitudes,
  NaN included, so never negative) and the codes' bits above their eight,
  OR-ed into ``x``'s bits.
  """
  zero = jnp.zeros(x.shape, jnp.int32)
  for y in codes_and_scales:
    if y.dtype == jnp.float32:  # block scales, broadcast over the last axis
      # Every bit is 0, so which scale lands on which element does not matter.
      bits = jax.lax.bitcast_convert_type(y, jnp.int32) >> 31
      bits = _per_element(bits, x.shape[-1], _ceil_div(x.shape[-1], y.shape[-1]))
    else:  # codes; two to a byte at 4 bits
      bits = y.astype(jnp.int32) >> 8
      if y.shape[-1] != x.shape[-1]:
        bits = jnp.stack([bits, bits], axis=-1).reshape(x.shape)
    zero = zero | bits
  return _or_bits(x, zero)


def _sign_zero(x: jax.Array) -> jax.Array:
  """int32 zeros that XLA cannot fold: the float32 ``x``'s sign bits, clamped at 0."""
  return jnp.maximum(jax.lax.bitcast_convert_type(x, jnp.int32) >> 31, 0)


def _dequantize_all(moments: list[QuantizedArray], tables: list[Tables]) -> list[jax.Array]:
  """Each moment's float32 values, as a chunk's step reads them.

  The dynamic map's values come from a gather, which XLA computes once into
  a buffer of its own. The float map's are a few integer operations that XLA
  recomputes inside every fusion that reads them, the output's included, and
  that one runs after the new codes are written over the old: XLA then
  copied the whole codes array every chunk (the step took 4x as long).
  ``optimization_barrier`` and an opaque division did not keep it from
  recomputing; a conditional's result is a buffer. Both branches are the
  same, and the predicate is a constant behind an ``optimization_barrier``,
  which XLA neither folds nor moves between devices (one read from the
  state, such as a scale's sign bit, made it gather that element across
  devices). A leaf of one chunk takes the same path, so that its arithmetic
  is rounded as a chunked leaf's (no multiply-add across the values).
  """
  if not any(q.map == 'float' for q in moments):
    return [q.dequantize(t) for q, t in zip(moments, tables)]

  def values(arrays: list[jax.Array]) -> list[jax.Array]:
    return [
      dataclasses.replace(q, codes=c, scale=s).dequantize(t)
      for q, t, c, s in zip(moments, tables, arrays[0::2], arrays[1::2])
    ]

  arrays = [a for q in moments for a in (q.codes, q.scale)]
  # An always-true predicate that XLA cannot fold, the same on every device.
  pred = jax.lax.optimization_barrier(jnp.int32(0)) >= 0
  return jax.lax.cond(pred, values, values, arrays)


def _block(n: int, block_size: int) -> int:
  return min(block_size, n)


def _ceil_div(a: int, b: int) -> int:
  return -(-a // b)
