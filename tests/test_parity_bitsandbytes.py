"""presets.bitsandbytes against the installed bitsandbytes (CPU kernels), code for code."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _harness import need

torch = need('torch')
bnb = need('bitsandbytes')
bnb_functional = need('bitsandbytes.functional')

from rmsprop_optax import (  # noqa: E402
  _quantize,
  _transforms,
  find_rms_state,
  presets,
  quantized,
  rmsprop,
)
from rmsprop_optax._quantize import code_map  # noqa: E402

# (64, 256): flat blocks are rows; (300, 70): flat blocks straddle rows;
# (40, 50): below min_8bit_size, float32 state; (5000,): 1-D, a short last block.
SHAPES = [(64, 256), (300, 70), (40, 50), (5000,)]
STEPS = 100
# Measured: 2.7e-7 of max|p| after 100 steps (8-bit), float32 rounding of the
# update (PyTorch rounds lr * g / denom in another order).
TRAJECTORY_RTOL = 1e-5


def _schedule(count):
  return 1e-2 * (1.0 + 0.5 * jnp.sin(0.3 * count))


def _run(ours, torch_opt_cls, **torch_kwargs):
  """Both optimizers for STEPS steps; per step, code and absmax mismatches per leaf."""
  rng = np.random.default_rng(0)
  init = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
  tparams = [torch.nn.Parameter(torch.tensor(p)) for p in init]
  topt = torch_opt_cls(tparams, lr=1e-2, **torch_kwargs)
  params = [jnp.asarray(p) for p in init]
  state = ours.init(params)
  update = jax.jit(ours.update)
  mismatches = []
  for t in range(STEPS):
    grads = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    topt.param_groups[0]['lr'] = float(np.float32(_schedule(t)))
    for p, g in zip(tparams, grads, strict=True):
      p.grad = torch.tensor(g)
    topt.step()
    updates, state = update([jnp.asarray(g) for g in grads], state, params)
    params = optax.apply_updates(params, updates)
    step = []
    nu = find_rms_state(state).nu
    codes_tree, scale_tree = (
      (nu.codes, nu.scale) if hasattr(nu, 'codes') else ([None] * len(SHAPES),) * 2
    )
    for p, nu_codes, nu_scale in zip(tparams, codes_tree, scale_tree, strict=True):
      s = topt.state[p]
      if s['state1'].dtype == torch.uint8 and nu_codes is not None:
        codes = int((np.asarray(nu_codes) != s['state1'].numpy()).sum())
        scales = int((np.asarray(nu_scale) != s['absmax1'].numpy()).sum())
        step.append((codes, scales))
      else:
        step.append(None)
    mismatches.append(step)
  errors = [
    float(np.abs(np.asarray(a) - b.detach().numpy()).max() / np.abs(b.detach().numpy()).max())
    for a, b in zip(params, tparams, strict=True)
  ]
  return mismatches, errors, topt, tparams


@pytest.mark.parametrize('signed', [True, False])
def test_code_map_is_bitsandbytes_dynamic_map(signed):
  expected = bnb_functional.create_dynamic_map(signed=signed).numpy()
  np.testing.assert_array_equal(code_map(8, signed, unsigned_zero=True), expected)


@pytest.mark.parametrize('chunk_elements', [None, 1024], ids=['default_chunks', 'small_chunks'])
def test_rmsprop8bit_codes_absmax_and_trajectory(chunk_elements, monkeypatch):
  """Every code and absmax, with each leaf stepped in chunks in place.

  At the default chunk size the quantized leaves are one chunk (64 x 256) or
  two runs of blocks (the others); with chunks of 1024 elements, 8 chunks of
  rows and 42 and 10 runs.
  """
  if chunk_elements is not None:
    monkeypatch.setattr(_quantize, 'CHUNK_ELEMENTS', chunk_elements)
  _transforms._jit_with_constants.cache_clear()  # per-leaf functions traced at another size
  layouts = [
    _quantize.QuantizedArray(None, None, s, 8, 256, True, 'flat', unsigned_zero=True)  # type: ignore[arg-type]
    for s in SHAPES
    if np.prod(s) >= 4096  # min_8bit_size: (40, 50) keeps float32 state
  ]
  pieces = [
    _quantize.num_chunks(_quantize.view_shape(q))
    if _quantize.chunk_width(q) is None
    else -(-np.prod(q.shape) // _quantize.chunk_width(q))
    for q in layouts
  ]
  assert pieces == ([1, 2, 2] if chunk_elements is None else [8, 42, 10])
  try:
    mismatches, errors, topt, tparams = _run(presets.bitsandbytes(_schedule), bnb.optim.RMSprop8bit)
  finally:
    _transforms._jit_with_constants.cache_clear()
  # RMSprop8bit's one state uses name2qmap['dynamic'], the signed map.
  qmap = topt.state[tparams[0]]['qmap1'].numpy()
  np.testing.assert_array_equal(qmap, code_map(8, True, unsigned_zero=True))
  kinds = [None if m is None else 'uint8' for m in mismatches[0]]
  assert kinds == ['uint8', 'uint8', None, 'uint8']
  # Every code of every quantized leaf and every absmax, at every one of the 100 steps.
  assert all(m in (None, (0, 0)) for step in mismatches for m in step), mismatches
  assert max(errors) <= TRAJECTORY_RTOL, errors


def test_rmsprop32bit_trajectory():
  _, errors, _, _ = _run(presets.bitsandbytes(_schedule, optim_bits=32), bnb.optim.RMSprop32bit)
  assert max(errors) <= TRAJECTORY_RTOL, errors


@pytest.mark.parametrize(
  'accumulator_dtype',
  [quantized(8), quantized(8, layout='flat', signed=True), jnp.float32],
  ids=['nearest-last-axis', 'nearest-flat-signed', 'float32'],
)
def test_other_state_is_not_within_the_bound(accumulator_dtype):
  """The bound can fail: round-to-nearest codes or float32 state drift past it."""
  ours = rmsprop(
    _schedule, decay=0.99, eps=1e-8, eps_in_sqrt=False, accumulator_dtype=accumulator_dtype
  )
  _, errors, _, _ = _run(ours, bnb.optim.RMSprop8bit)
  # Measured: 1.4e-2, 1.1e-2 and 1.3e-2 of max|p| (100 steps).
  assert max(errors) > 10 * TRAJECTORY_RTOL, errors


def test_weight_decay_trajectory():
  _, errors, _, _ = _run(
    presets.bitsandbytes(_schedule, weight_decay=0.01), bnb.optim.RMSprop8bit, weight_decay=0.01
  )
  assert max(errors) <= TRAJECTORY_RTOL, errors


@pytest.mark.parametrize(
  ('kwargs', 'match'),
  [
    (dict(momentum=0.9), 'ignores it'),
    (dict(centered=True), 'refuses centered'),
    (dict(optim_bits=4), 'optim_bits'),
    (dict(alpha=0.0), 'alpha'),
  ],
)
def test_refused_options(kwargs, match):
  with pytest.raises(ValueError, match=match):
    presets.bitsandbytes(**kwargs)
