"""Blockwise-quantized state (``rmsprop_optax.quantized``).

References: a NumPy re-implementation written from the method (Dettmers et
al., "8-bit Optimizers via Block-wise Quantization", ICLR 2022): absmax per
block of ``block_size`` elements along the last axis, the nearest code found
by brute force over the whole map (no search), and RMSprop's step on the
dequantized state in float32 NumPy. The zero-free unsigned map (Li, Chen and
Zhu, "Memory Efficient Optimizers with 4-bit States", NeurIPS 2023,
arXiv:2309.01507) is rebuilt here in float64 from its description. The
bitsandbytes package itself is the reference of
``tests/test_parity_bitsandbytes.py``.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

import rmsprop_optax
from rmsprop_optax import _quantize

# float32 step on the same dequantized state, NumPy vs XLA: the same
# operations, possibly fused in another order, so a few last bits.
STEP_RTOL = 1e-6
# 8-bit state against float32 state after 100 steps of a 2-parameter-tensor
# regression: a loose bound that still fails if quantization is off (a wrong
# map or scale gives errors of order 1).
Q8_TRAJECTORY_RTOL = 0.05


def _zero_free_map_np(bits):
  """The unsigned map without 0, from its description, in float64.

  One decade per exponent ``10**-(decades) .. 1`` (8 bits: eight, 4 bits:
  four); the k-th decade from the bottom holds ``2**k`` codes, the midpoints
  of ``2**k`` equal cells of [0.1, 1] times the decade; then 1.
  """
  decades = 8 if bits == 8 else 4
  values = [1.0]
  for k in range(decades):
    cells = 2**k
    width = 0.9 / cells
    values += [10.0 ** (k + 1 - decades) * (0.1 + (j + 0.5) * width) for j in range(cells)]
  return np.sort(np.asarray(values))


def _float_map_np(signed):
  """``map='float'``, from its description, in float64, indexed by code.

  A magnitude of n bits (8 unsigned, 7 signed) with k leading zeros and bit
  length L = n - k covers [4**-(k + 1), 4**-k): its 2**(L - 1) codes, the
  first half in equal steps through the lower power of 2, the second half
  through the upper. The all-ones code is 1; code 0 is 4**-9 unsigned and 0
  signed; bit 7 of a signed code negates it.
  """
  n = 7 if signed else 8
  values = []
  for c in range(2**n):
    if c == 2**n - 1:
      values.append(1.0)
    elif c == 0:
      values.append(0.0 if signed else 4.0**-9)
    else:
      length = c.bit_length()
      k = n - length
      t = c - 2 ** (length - 1)  # the code's place in its power of 4
      per_binade = 2 ** (length - 2) if length >= 2 else 1
      upper, step = divmod(t, per_binade)
      values.append(4.0 ** -(k + 1) * 2.0**upper * (1 + step / per_binade))
  values = np.asarray(values)
  return np.concatenate([values, -values]) if signed else values


def _table_np(bits, signed, unsigned_zero, map='dynamic'):
  if map == 'float':
    return _float_map_np(signed)
  if not signed and not unsigned_zero:
    return _zero_free_map_np(bits)
  return _quantize.code_map(bits, signed, unsigned_zero=True).astype(np.float64)


def _nearest_codes_np(x, bits, block_size, signed, unsigned_zero, map='dynamic'):
  """Brute force: per block absmax, then argmin over every code of the map."""
  table = _table_np(bits, signed, unsigned_zero, map)
  x = np.asarray(x, np.float32)
  n = x.shape[-1]
  b = min(block_size, n)
  nb = -(-n // b)
  padded = np.zeros(x.shape[:-1] + (nb * b,), np.float32)
  padded[..., :n] = x
  blocks = padded.reshape(x.shape[:-1] + (nb, b))
  scale = np.max(np.abs(blocks), axis=-1)
  normalized = (
    blocks * np.where(scale > 0, np.float32(1) / np.where(scale > 0, scale, 1), 0)[..., None]
  )
  dist = np.abs(normalized[..., None].astype(np.float64) - table)
  codes = np.argmin(dist, axis=-1).reshape(x.shape[:-1] + (nb * b,))[..., :n]
  return codes.astype(np.uint8), scale


def _dequantize_np(codes, scale, bits, block_size, signed, unsigned_zero, map='dynamic'):
  if map == 'float':
    table = _float_map_np(signed).astype(np.float32)
  else:
    table = _quantize.code_map(bits, signed, unsigned_zero=unsigned_zero)
  n = codes.shape[-1]
  b = min(block_size, n)
  return table[codes] * np.repeat(scale, b, axis=-1)[..., :n]


@pytest.mark.parametrize('bits', [8, 4])
@pytest.mark.parametrize('signed', [False, True])
def test_code_map_is_sorted_distinct_and_spans_the_unit_interval(bits, signed):
  table = _quantize.code_map(bits, signed, unsigned_zero=True)
  assert table.shape == (2**bits,) and table.dtype == np.float32
  assert np.all(np.diff(table) > 0)
  assert table[-1] == 1.0 and 0.0 in table
  assert (table.min() < -0.85) if signed else (table.min() == 0.0)
  # Dynamic: the smallest nonzero magnitude is 10**-(decades) of the largest.
  smallest = np.min(np.abs(table[table != 0]))
  assert smallest < (1e-6 if bits == 8 else 1e-2)


@pytest.mark.parametrize('bits', [8, 4])
def test_zero_free_unsigned_map(bits):
  """No 0: one decade more at the bottom; every other code keeps its index and value."""
  table = _quantize.code_map(bits, False, unsigned_zero=False)
  assert table.shape == (2**bits,) and table.dtype == np.float32
  assert np.all(np.diff(table) > 0) and table[0] > 0 and table[-1] == 1.0
  np.testing.assert_allclose(table, _zero_free_map_np(bits), rtol=1e-6)
  np.testing.assert_array_equal(table[1:], _quantize.code_map(bits, False, unsigned_zero=True)[1:])
  # The new decade's one cell is [0.1, 1]: its midpoint 0.55, times 10**-7 (10**-3), in float32.
  assert table[0] == np.float32(1e-7 if bits == 8 else 1e-3) * np.float32(0.55)
  # The signed map keeps its 0 (mu and the momentum buffer cross it).
  np.testing.assert_array_equal(
    _quantize.code_map(bits, True, unsigned_zero=False),
    _quantize.code_map(bits, True, unsigned_zero=True),
  )


def test_the_spec_picks_the_map():
  assert rmsprop_optax.quantized().unsigned_zero is False
  assert rmsprop_optax.quantized(4).unsigned_zero is False
  assert rmsprop_optax.quantized(unsigned_zero=True).unsigned_zero is True
  bnb = rmsprop_optax.quantized(8, 256, layout='flat', rounding='bitsandbytes', signed=True)
  assert bnb.unsigned_zero is True
  assert rmsprop_optax.presets.bitsandbytes()  # builds
  assert rmsprop_optax.quantized() == rmsprop_optax.quantized(unsigned_zero=False)
  state = rmsprop_optax.rmsprop(
    1e-3, centered=True, accumulator_dtype=rmsprop_optax.quantized(8, min_size=0)
  ).init({'w': jnp.zeros((2, 8))})
  rms = rmsprop_optax.find_rms_state(state)
  assert rms.nu.spec.unsigned_zero is False and not rms.nu.signed
  # The zero fill has scale 0: whatever its code stands for, it dequantizes to 0.
  np.testing.assert_array_equal(np.asarray(rms.nu.dequantize()['w']), np.zeros((2, 8)))
  np.testing.assert_array_equal(np.asarray(rms.nu.codes['w']), np.zeros((2, 8)))


@pytest.mark.parametrize('bits, block_size', [(8, 256), (8, 64), (4, 128)])
@pytest.mark.parametrize('signed, unsigned_zero', [(False, False), (False, True), (True, False)])
@pytest.mark.parametrize('shape', [(3, 700), (5000,), (2, 3, 40)])
def test_quantize_picks_the_nearest_code_and_dequantizes(
  bits, block_size, signed, unsigned_zero, shape
):
  rng = np.random.default_rng(0)
  x = rng.standard_normal(shape).astype(np.float32) * np.logspace(-3, 1, shape[-1])
  if not signed:
    x = x**2  # nine decades: the smallest fall below every map's smallest code
  x[..., 1] = 0.0  # exact zeros inside nonzero blocks
  b = min(block_size, shape[-1])
  x.reshape(-1, shape[-1])[0, :b] = 0.0  # an all-zero block
  q = _quantize.quantize(
    jnp.asarray(x),
    bits=bits,
    block_size=block_size,
    signed=signed,
    unsigned_zero=unsigned_zero,
  )
  want_codes, want_scale = _nearest_codes_np(x, bits, block_size, signed, unsigned_zero)
  np.testing.assert_array_equal(np.asarray(q.scale), want_scale)
  got_codes = np.asarray(q.codes)
  if bits == 4:  # two codes per byte, low nibble first
    got_codes = np.stack([got_codes & 15, got_codes >> 4], axis=-1).reshape(shape)
  np.testing.assert_array_equal(got_codes, want_codes)
  want = _dequantize_np(want_codes, want_scale, bits, block_size, signed, unsigned_zero)
  got = np.asarray(q.dequantize())
  np.testing.assert_array_equal(got, want)
  np.testing.assert_array_equal(got.reshape(-1, shape[-1])[0, :b], 0.0)
  if not signed:
    # Stored as 0 only where the block is all zero, or with the map that has a 0.
    stored_zero = (got == 0) & (x > 0)
    assert stored_zero.any() == unsigned_zero


@pytest.mark.parametrize('signed', [False, True])
def test_float_map_is_its_definition(signed):
  table = _quantize.float_map(signed)
  assert table.shape == (256,) and table.dtype == np.float32
  np.testing.assert_array_equal(table.astype(np.float64), _float_map_np(signed))
  magnitudes = table[:128] if signed else table
  assert np.all(np.diff(magnitudes) > 0) and magnitudes[-1] == 1.0
  if signed:
    assert table[0] == 0.0 and table[255] == -1.0 and table[1] == 2.0**-14
  else:
    assert table[0] == 2.0**-18
  # In [1/4, 1]: 2**(n - 2) codes per power of 2, spacing at most 1/64 (1/32 signed) of the upper.
  top = magnitudes[magnitudes >= 0.25].astype(np.float64)
  assert len(top) == 2 ** (6 if signed else 7)  # the top code, all ones, is 1 itself
  assert np.max(np.diff(top) / top[1:]) <= (1 / 32 if signed else 1 / 64) + 1e-12


@pytest.mark.parametrize('signed', [False, True])
@pytest.mark.parametrize('shape', [(3, 700), (5000,), (2, 3, 40)])
def test_float_map_quantize_picks_the_nearest_code_and_dequantizes(signed, shape):
  rng = np.random.default_rng(0)
  x = rng.standard_normal(shape).astype(np.float32) * np.logspace(-6, 1, shape[-1])
  if not signed:
    x = x**2  # fourteen decades: the smallest fall below the smallest code
  x[..., 1] = 0.0
  b = min(256, shape[-1])
  x.reshape(-1, shape[-1])[0, :b] = 0.0  # an all-zero block
  spec = rmsprop_optax.quantized(8, map='float')
  q = _quantize.quantize(
    jnp.asarray(x), bits=8, block_size=256, signed=signed, unsigned_zero=False, map='float'
  )
  assert q.map == spec.map == 'float' and q.lookup_tables() == {}
  want_codes, want_scale = _nearest_codes_np(x, 8, 256, signed, False, map='float')
  np.testing.assert_array_equal(np.asarray(q.scale), want_scale)
  np.testing.assert_array_equal(np.asarray(q.codes), want_codes)
  want = _dequantize_np(want_codes, want_scale, 8, 256, signed, False, map='float')
  got = np.asarray(q.dequantize())
  np.testing.assert_array_equal(got, want)
  np.testing.assert_array_equal(got.reshape(-1, shape[-1])[0, :b], 0.0)
  scale = np.repeat(want_scale, b, axis=-1)[..., : shape[-1]]
  nonzero = scale > 0
  if signed:
    # Half a spacing: at most 1/64 of a value above a quarter of the scale.
    high = nonzero & (np.abs(x) >= scale / 4)
    assert np.all(np.abs(got - x)[high] <= np.abs(x)[high] / 64 * (1 + 1e-6))
  else:
    # No 0: a positive nu never reads 0 in a block that is not all zero.
    assert not np.any((got == 0) & nonzero)


@pytest.mark.parametrize('signed', [False, True])
def test_float_map_flat_layout_is_the_flattened_array(signed):
  x = np.random.default_rng(3).standard_normal((7, 100)).astype(np.float32)
  x = x if signed else x**2
  q = _quantize.quantize(
    jnp.asarray(x),
    bits=8,
    block_size=64,
    signed=signed,
    layout='flat',
    unsigned_zero=False,
    map='float',
  )
  want_codes, want_scale = _nearest_codes_np(x.reshape(-1), 8, 64, signed, False, map='float')
  np.testing.assert_array_equal(np.asarray(q.codes).reshape(-1), want_codes)
  np.testing.assert_array_equal(np.asarray(q.scale), want_scale)
  want = _dequantize_np(want_codes, want_scale, 8, 64, signed, False, map='float')
  np.testing.assert_array_equal(np.asarray(q.dequantize()).reshape(-1), want)


def test_float_map_settings_are_checked_below_the_spec_too():
  x = jnp.ones((2, 8))
  with pytest.raises(ValueError, match="quantize: map='float' needs bits=8"):
    _quantize.quantize(x, bits=4, block_size=8, signed=False, unsigned_zero=False, map='float')
  with pytest.raises(ValueError, match="quantize: map='float' has no code for 0"):
    _quantize.quantize(x, bits=8, block_size=8, signed=False, unsigned_zero=True, map='float')
  with pytest.raises(ValueError, match='QuantizedArray: `map` must be one of'):
    rmsprop_optax.QuantizedArray(
      jnp.zeros(8, jnp.uint8), jnp.ones(1), (8,), 8, 8, False, unsigned_zero=False, map='fp8'
    )


@pytest.mark.parametrize('signed', [False, True])
def test_float_codes_are_nearest_for_every_kind_of_float(signed):
  table = _float_map_np(signed)
  rng = np.random.default_rng(5)
  positive = np.sort(table[table > 0])
  midpoints = ((positive[1:] + positive[:-1]) / 2).astype(np.float32)
  values = [
    table,
    np.nextafter(midpoints, np.float32(2)),
    np.nextafter(midpoints, np.float32(-2)),
    rng.uniform(-1, 1, 100_000) * 10.0 ** rng.uniform(-45, 0, 100_000),  # denormals too
    [0.0, -0.0, 1.0, -1.0, 1e-45, 2.0**-14, 2.5 * 4.0**-7, 2.0**-17, 1.0000001, 0.9921875],
  ]
  v = np.concatenate([np.asarray(x, np.float32) for x in values])
  if not signed:
    v = np.abs(v)
  got = np.asarray(jax.jit(lambda x: _quantize._float_codes(x, signed))(jnp.asarray(v)))
  error = np.abs(table[got] - v.astype(np.float64))
  best = np.min(np.abs(table[None, :] - v[:, None].astype(np.float64)), axis=1)
  np.testing.assert_array_equal(error, best)
  if signed:
    assert np.all(got[v == 0] == 0)  # 0 and -0.0 both code 0
    assert np.all(np.sign(table[got]) * np.sign(v) >= 0)


@pytest.mark.parametrize('bits', [8, 4])
@pytest.mark.parametrize('signed, unsigned_zero', [(False, True), (False, False), (True, True)])
def test_code_lookup_equals_a_binary_search_for_every_kind_of_float(bits, signed, unsigned_zero):
  """The bucket-table lookup counts the midpoints below each value, as searchsorted does."""
  table = _quantize.code_map(bits, signed, unsigned_zero=unsigned_zero)
  midpoints = (table[1:] + table[:-1]) / 2
  rng = np.random.default_rng(4)
  values = [
    midpoints,  # ties go to the lower code
    np.nextafter(midpoints, np.float32(2)),
    np.nextafter(midpoints, np.float32(-2)),
    table,
    rng.uniform(-1.1, 1.1, 100_000),
    rng.uniform(-1, 1, 100_000) * 10.0 ** rng.uniform(-40, 0, 100_000),  # denormals too
    [0.0, -0.0, 1.0, -1.0, 1e-45, -1e-45, 3.0, -3.0, np.inf, -np.inf, 2.0, -2.0],
  ]
  v = np.concatenate([np.asarray(x, np.float32) for x in values])
  lookup = jax.jit(lambda x: _quantize._nearest_codes(x, bits, signed, unsigned_zero=unsigned_zero))
  got = np.asarray(lookup(jnp.asarray(v)))
  np.testing.assert_array_equal(got, np.searchsorted(midpoints, v, side='left'))


def test_quantize_round_trip_error_is_bounded_by_the_code_spacing():
  x = jnp.asarray(np.random.default_rng(1).standard_normal((16, 1024)), jnp.float32) ** 2
  q = _quantize.quantize(x, bits=8, block_size=256, signed=False, unsigned_zero=False)
  # The top decade of the unsigned 8-bit map is 128 codes over [0.1, 1]:
  # spacing 0.007 of the block maximum, so half of it at most.
  scale = jnp.repeat(q.scale, 256, axis=-1)
  assert float(jnp.max(jnp.abs(q.dequantize() - x) / scale)) <= 0.0036
  assert q.dequantize().dtype == jnp.float32


@pytest.mark.parametrize('bits, map', [(8, 'dynamic'), (4, 'dynamic'), (8, 'float')])
@pytest.mark.parametrize('centered', [False, True])
def test_one_step_is_rmsprop_on_the_dequantized_state(bits, map, centered):
  """The update uses the unrounded new moments; the new state is their codes."""
  spec = rmsprop_optax.quantized(bits, min_size=0, map=map)
  tx = (rmsprop_optax.scale_by_centered_rms if centered else rmsprop_optax.scale_by_rms)(
    decay=0.9, eps=1e-8, accumulator_dtype=spec
  )
  rng = np.random.default_rng(2)
  shape = (4, 300)
  state = tx.init(jnp.zeros(shape))
  # Two steps, so the second starts from nonzero quantized moments.
  for step in range(2):
    g = rng.standard_normal(shape).astype(np.float32)
    old_nu = np.asarray(state.nu.dequantize())
    new_nu = np.float32(0.9) * old_nu + np.float32(0.1) * g * g
    s = new_nu
    if centered:
      new_mu = np.float32(0.9) * np.asarray(state.mu.dequantize()) + np.float32(0.1) * g
      s = np.maximum(new_nu - new_mu * new_mu, 0)
    want = g / np.sqrt(s + np.float32(1e-8))
    out, state = tx.update(jnp.asarray(g), state)
    np.testing.assert_allclose(np.asarray(out), want, rtol=STEP_RTOL, err_msg=f'step {step}')
    codes, scale = _nearest_codes_np(new_nu, bits, spec.block_size, False, False, map)
    # The stored codes are the nearest codes of the new moment. XLA's new_nu
    # may differ from NumPy's in the last bit (fused multiply-add), which
    # moves a block's scale by an ulp and can flip a code that sits on the
    # midpoint between two: count such cases, do not hide them.
    np.testing.assert_allclose(np.asarray(state.nu.scale), scale, rtol=STEP_RTOL)
    got = np.asarray(state.nu.codes)
    if bits == 4:
      got = np.stack([got & 15, got >> 4], axis=-1).reshape(shape)
    assert np.mean(got == codes) > 0.999, np.mean(got == codes)


@pytest.mark.parametrize('weight_decay', [0.0, 0.01])
def test_bitsandbytes_rounding_of_the_second_moment_holds_in_the_compiled_step(weight_decay):
  """``presets.bitsandbytes`` rounds ``alpha * nu + (1 - alpha) * g**2`` as bnb's CPU kernel does.

  bnb: ``alpha * nu`` rounded on its own, then one fused multiply-add
  ``((1 - alpha) * g) * g + that`` (``backends/cpu/ops.py``). Which product XLA
  fuses into the add is the compiler's choice, steered by
  ``_quantize.bitsandbytes_ema_of_squares``; this checks the choice in the
  compiled step itself, chunked (the leaf is 8 chunks), without bitsandbytes
  installed. The other fusion (``fma(alpha, nu, ((1 - alpha) * g) * g)``,
  XLA's default) moves hundreds of block scales here, so either rounding fails
  the other's check. Weight decay is added first, ``g.add_(p, alpha=wd)``:
  torch's vectorised add is one fused multiply-add as well
  (``aten/src/ATen/native/ufunc/add.h``).
  """
  alpha = 0.99
  opt = rmsprop_optax.presets.bitsandbytes(1e-3, alpha=alpha, weight_decay=weight_decay)
  rng = np.random.default_rng(0)
  shape = (256, 4096)
  assert _quantize.num_chunks((shape[0] * shape[1] // 256, 256)) == 8
  params = jnp.asarray(rng.standard_normal(shape), jnp.float32)
  g1, g2 = (rng.standard_normal(shape).astype(np.float32) for _ in range(2))
  update = jax.jit(opt.update)
  state = opt.init(params)
  _, state1 = update(jnp.asarray(g1), state, params)
  _, state2 = update(jnp.asarray(g2), state1, params)
  treedef = jax.tree.structure(params)
  nu1 = np.asarray(rmsprop_optax.find_rms_state(state1).nu.leaves(treedef)[0].dequantize())
  stored = rmsprop_optax.find_rms_state(state2).nu.leaves(treedef)[0]

  # A fused multiply-add rounds once: the float64 product of two float32 is exact.
  p = np.asarray(params)
  g2_two = g2 + np.float32(weight_decay) * p  # decay added with two roundings
  g2 = (np.float64(np.float32(weight_decay)) * p.astype(np.float64) + g2).astype(np.float32)
  scaled = np.float32(alpha) * nu1  # rounded to float32
  half = np.float32(1 - alpha) * g2  # rounded to float32
  bnb_nu = (half.astype(np.float64) * g2 + scaled).astype(np.float32)
  xla_nu = (np.float64(np.float32(alpha)) * nu1 + half * g2).astype(np.float32)

  def mismatches(nu):
    q = _quantize.requantize(jnp.asarray(nu), stored)
    return [
      int(np.sum(np.asarray(a) != np.asarray(b)))
      for a, b in ((q.codes, stored.codes), (q.scale, stored.scale))
    ]

  assert mismatches(bnb_nu) == [0, 0]
  # The check can fail: the other rounding differs in the last bit of about a
  # fifth of the elements, and in hundreds of block scales (929 measured).
  assert np.mean(bnb_nu != xla_nu) > 0.1
  assert mismatches(xla_nu)[1] > 100
  if weight_decay:
    half = np.float32(1 - alpha) * g2_two
    two_nu = (half.astype(np.float64) * g2_two + scaled).astype(np.float32)
    assert mismatches(two_nu)[1] > 0  # 7 block scales measured


@pytest.mark.parametrize('bits, small', [(8, 3e-4), (4, 3e-2)])
def test_a_small_second_moment_does_not_collapse_to_zero(bits, small):
  """Li et al.'s zero-point problem, and the map without 0 that avoids it.

  One block: an element with gradient 1 and one with a constant ``small``
  gradient, whose ``nu`` (``small**2``: 9e-8 at 8 bits, 9e-4 at 4 bits) lies
  below half the smallest positive code of bitsandbytes' unsigned map. With
  that map it is stored as 0 at every step, so every update of the small
  element is ``g / sqrt((1 - decay) g**2)``: 3.2x float32's at decay 0.9.
  Without a 0 it is stored as the smallest code and its update stays within
  1.3x of float32's (the code lies within 1.7x of its ``nu``).
  """
  decay, steps = 0.9, 100
  g = np.zeros((1, 8), np.float32)
  g[0, 0], g[0, 1:] = 1.0, small
  updates = {}
  for unsigned_zero in (True, False, None):
    spec = (
      None
      if unsigned_zero is None
      else rmsprop_optax.quantized(bits, min_size=0, unsigned_zero=unsigned_zero)
    )
    tx = rmsprop_optax.scale_by_rms(decay=decay, eps=0.0, accumulator_dtype=spec)
    state = tx.init(jnp.zeros(g.shape))
    step = jax.jit(tx.update)
    for _ in range(steps):
      out, state = step(jnp.asarray(g), state)
    if unsigned_zero is not None:
      stored = np.asarray(state.nu.dequantize())[0, 1:]
      assert np.all(stored == 0) if unsigned_zero else np.all(stored > 0), unsigned_zero
    updates[unsigned_zero] = np.asarray(out)[0, 1:]
  f32 = updates[None]
  np.testing.assert_allclose(f32, 1.0, rtol=1e-3)  # |g| / sqrt(g**2) after 100 steps
  np.testing.assert_allclose(updates[True], 1 / np.sqrt(1 - decay), rtol=1e-5)
  assert np.all((updates[False] > 0.7 * f32) & (updates[False] < 1.3 * f32)), updates[False]


def test_small_leaves_keep_float32_state_and_large_ones_get_codes():
  params = {'w': jnp.zeros((64, 256), jnp.bfloat16), 'b': jnp.zeros(64), 'odd': jnp.zeros((9, 455))}
  state = rmsprop_optax.rmsprop(
    1e-3, momentum=0.9, centered=True, accumulator_dtype=rmsprop_optax.quantized(4)
  ).init(params)
  rms = rmsprop_optax.find_rms_state(state)
  for tree in (rms.nu, rms.mu, state[2].trace):
    assert isinstance(tree, rmsprop_optax.QuantizedTree)
    assert tree.codes['w'].dtype == jnp.uint8 and tree.scale['w'].dtype == jnp.float32
    assert tree.codes['w'].shape == (64, 128) and tree.scale['w'].shape == (64, 2)
    assert tree.dense['w'] is None
    for small in ('b', 'odd'):  # below min_size; 4 bits need an even last axis
      assert (
        tree.dense[small].dtype == jnp.float32 and tree.dense[small].shape == params[small].shape
      )
      assert tree.codes[small] is None and tree.scale[small] is None
  assert not rms.nu.signed and rms.mu.signed and state[2].trace.signed


def test_eval_shape_reports_the_real_bytes():
  params = {'w': jax.ShapeDtypeStruct((1024, 1024), jnp.float32)}

  def state_bytes(spec, **kwargs):
    shapes = jax.eval_shape(
      rmsprop_optax.rmsprop(1e-3, accumulator_dtype=spec, **kwargs).init, params
    )
    return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(shapes))

  f32 = state_bytes(None, momentum=0.9, centered=True)
  q8 = state_bytes(rmsprop_optax.quantized(8), momentum=0.9, centered=True)
  q4 = state_bytes(rmsprop_optax.quantized(4), momentum=0.9, centered=True)
  n = 1024 * 1024
  assert f32 == 3 * 4 * n + 4
  assert q8 == 3 * (n + 4 * n // 256) + 4  # 1 byte + 4/256 bytes per element
  assert q8 / f32 <= 0.27
  assert q4 == 3 * (n // 2 + 4 * n // 128) + 4
  assert q4 / f32 <= 0.14


def _problem():
  k1, k2 = jax.random.split(jax.random.key(3))
  x = jax.random.normal(k1, (256, 64))
  w_true = jax.random.normal(k2, (64, 128))
  y = x @ w_true
  params = {'w': jnp.zeros((64, 128)), 'b': jnp.zeros(128)}
  loss = lambda p: jnp.mean((x @ p['w'] + p['b'] - y) ** 2)
  return params, loss


def _train(opt, steps, params=None):
  params0, loss = _problem()
  params = params0 if params is None else params

  def body(carry, _):
    p, s = carry
    updates, s = opt.update(jax.grad(loss)(p), s, p)
    return (optax.apply_updates(p, updates), s), loss(p)

  (params, state), losses = jax.jit(lambda p: jax.lax.scan(body, (p, opt.init(p)), None, steps))(
    params
  )
  return params, state, losses


def test_eight_bit_state_trains_like_float32_state():
  spec = rmsprop_optax.quantized(8, min_size=1024)
  kwargs = dict(momentum=0.9, centered=True)
  p32, _, l32 = _train(rmsprop_optax.rmsprop(1e-2, **kwargs), 100)
  p8, state, l8 = _train(rmsprop_optax.rmsprop(1e-2, accumulator_dtype=spec, **kwargs), 100)
  assert float(l8[-1]) < 0.05 * float(l8[0])
  err = float(jnp.max(jnp.abs(p8['w'] - p32['w'])) / jnp.max(jnp.abs(p32['w'])))
  assert err < Q8_TRAJECTORY_RTOL, err
  assert rmsprop_optax.find_rms_state(state).nu.codes['w'].dtype == jnp.uint8


def test_jit_scan_and_a_python_loop_agree_bit_for_bit():
  opt = rmsprop_optax.rmsprop(
    1e-2, momentum=0.9, centered=True, accumulator_dtype=rmsprop_optax.quantized(8, min_size=0)
  )
  p_scan, s_scan, _ = _train(opt, 10)
  params, loss = _problem()
  state = opt.init(params)
  step = jax.jit(lambda p, s: opt.update(jax.grad(loss)(p), s, p))
  for _ in range(10):
    updates, state = step(params, state)
    params = optax.apply_updates(params, updates)
  chex.assert_trees_all_equal((params, state), (p_scan, s_scan))
  chex.assert_trees_all_equal_dtypes(state, opt.init(params))


def test_apply_if_finite_leaves_quantized_state_bit_identical():
  opt = optax.apply_if_finite(
    rmsprop_optax.rmsprop(
      1e-2, momentum=0.9, accumulator_dtype=rmsprop_optax.quantized(8, min_size=0)
    ),
    max_consecutive_errors=3,
  )
  params, loss = _problem()
  state = opt.init(params)
  _, state = opt.update(jax.grad(loss)(params), state, params)
  bad = jax.tree.map(lambda g: g.at[0].set(jnp.nan), jax.grad(loss)(params))
  updates, new_state = opt.update(bad, state, params)
  chex.assert_trees_all_equal(new_state.inner_state, state.inner_state)
  assert all(float(jnp.max(jnp.abs(u))) == 0 for u in jax.tree.leaves(updates))


def test_inject_hyperparams_with_quantized_state():
  spec = rmsprop_optax.quantized(8, min_size=0)
  plain = rmsprop_optax.rmsprop(1e-2, accumulator_dtype=spec)
  injected = optax.inject_hyperparams(rmsprop_optax.rmsprop)(
    learning_rate=1e-2, accumulator_dtype=spec
  )
  params, loss = _problem()
  s_plain, s_inj = plain.init(params), injected.init(params)
  assert jax.tree.structure(s_inj.inner_state) == jax.tree.structure(s_plain)
  u_plain, _ = plain.update(jax.grad(loss)(params), s_plain)
  u_inj, _ = injected.update(jax.grad(loss)(params), s_inj)
  chex.assert_trees_all_close(u_inj, u_plain, rtol=1e-6)


@pytest.mark.parametrize(
  'spec',
  [rmsprop_optax.quantized(4, min_size=0), rmsprop_optax.quantized(8, min_size=0, map='float')],
  ids=['4-bit', 'float map'],
)
def test_orbax_checkpoint_resumes_bit_for_bit(tmp_path, spec):
  opt = rmsprop_optax.rmsprop(1e-2, momentum=0.9, centered=True, accumulator_dtype=spec)
  params, loss = _problem()
  step = jax.jit(lambda p, s: opt.update(jax.grad(loss)(p), s, p))

  def run(p, s, n):
    for _ in range(n):
      u, s = step(p, s)
      p = optax.apply_updates(p, u)
    return p, s

  p_mid, s_mid = run(params, opt.init(params), 5)
  with ocp.StandardCheckpointer() as ckpt:
    ckpt.save(tmp_path / 'ckpt', {'params': p_mid, 'opt_state': s_mid})
  target = {'params': p_mid, 'opt_state': jax.eval_shape(opt.init, params)}
  with ocp.StandardCheckpointer() as ckpt:
    restored = ckpt.restore(tmp_path / 'ckpt', target)
  chex.assert_trees_all_equal(restored['opt_state'], s_mid)
  chex.assert_trees_all_equal_dtypes(restored['opt_state'], s_mid)
  chex.assert_trees_all_equal(
    run(restored['params'], restored['opt_state'], 5), run(p_mid, s_mid, 5)
  )


def test_diagnostics_read_quantized_state():
  spec = rmsprop_optax.quantized(8, min_size=0)
  opt = rmsprop_optax.rmsprop(0.1, accumulator_dtype=spec)
  params, loss = _problem()
  _, state = opt.update(jax.grad(loss)(params), opt.init(params), params)
  eff = rmsprop_optax.effective_learning_rate(state, 0.1, eps=1e-8)
  nu = rmsprop_optax.find_rms_state(state).nu.dequantize()['w']
  np.testing.assert_allclose(eff['w'], 0.1 / np.sqrt(np.asarray(nu) + 1e-8), rtol=1e-6)


@pytest.mark.parametrize(
  'kwargs, match',
  [
    ({'bits': 3}, '`bits` must be 8 or 4, got 3'),
    ({'bits': 16}, '`bits`'),
    ({'block_size': 100}, '`block_size` must be a power of two'),
    ({'block_size': 0}, '`block_size`'),
    ({'block_size': 1}, '`block_size`'),
    ({'min_size': -1}, '`min_size`'),
    ({'unsigned_zero': 0}, '`unsigned_zero` must be None, True or False'),
    ({'map': 'fp8'}, r"`map` must be one of \('dynamic', 'float'\), got 'fp8'"),
    ({'bits': 4, 'map': 'float'}, "map='float' needs bits=8 and rounding='nearest'"),
    ({'rounding': 'bitsandbytes', 'map': 'float'}, "map='float' needs bits=8"),
    ({'unsigned_zero': True, 'map': 'float'}, "map='float' has no code for 0"),
  ],
)
def test_bad_quantized_arguments_are_value_errors_naming_them(kwargs, match):
  with pytest.raises(ValueError, match=match):
    rmsprop_optax.quantized(**kwargs)


def test_complex_params_with_quantized_state_are_refused():
  opt = rmsprop_optax.rmsprop(1e-3, accumulator_dtype=rmsprop_optax.quantized(8, min_size=0))
  with pytest.raises(TypeError, match='quantized.*real params only'):
    opt.init({'z': jnp.zeros(10, jnp.complex64)})
