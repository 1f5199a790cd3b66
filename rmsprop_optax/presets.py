"""Tier 3: framework-exact RMSprop, one call of :func:`rmsprop_optax.rmsprop` each.

Each preset takes the source framework's own argument names and defaults and
reproduces its trajectory (float32 within 1e-5 relative, float64 within 1e-10;
``tests/test_parity_*.py``). Learning rates may be Optax schedules; they are read
with the step count before the increment, as PyTorch's ``LRScheduler`` (stepped
after ``optimizer.step()``) and Keras' schedules do.

=============  ==================  ==================  ===========  ===============
preset         eps                 lr vs momentum      initial nu   weight decay
=============  ==================  ==================  ===========  ===============
pytorch        ``sqrt(v) + eps``   outside the buffer  0            coupled L2
keras          ``sqrt(v + eps)``   inside the buffer   0            decoupled
tf1            ``sqrt(v + eps)``   inside the buffer   1            none
timm_tf        ``sqrt(v + eps)``   either (flag)       1            either (flag)
graves2013     ``sqrt(v + eps)``   inside the buffer   0            none
dqn_nature     ``sqrt(v + eps)``   no momentum         0            none
lasagne        ``sqrt(v + eps)``   no momentum         0            none
bitsandbytes   ``sqrt(v) + eps``   no momentum         0            coupled L2
=============  ==================  ==================  ===========  ===============

bitsandbytes keeps ``v`` in 8 bits (``optim_bits=8``): its code map, blocks
and code choice, so the stored codes equal bnb's.

The plain :func:`rmsprop_optax.rmsprop` takes ``optax.rmsprop``'s arguments
with its defaults (eps inside the root, lr inside the buffer, ``nu`` from 0).
pytorch, keras and bitsandbytes are checked against the installed frameworks
(``python -m rmsprop_optax parity``); tf1, timm_tf, graves2013, dqn_nature and
lasagne against float64 NumPy references written in each framework's own
arithmetic order (``tests/framework_refs.py``).

graves2013 and dqn_nature are always centered; the others take ``centered``.
Centered denominators put eps where the plain one does (PyTorch
``sqrt(v - m^2) + eps``, the rest ``sqrt(v - m^2 + eps)``).

.. note::
  In float64, Optax's own schedules (``optax.exponential_decay``, ...) compute
  in float32, because the int32 step count divided by an int is float32 in
  JAX. To reproduce a float64 framework run to 1e-10, evaluate the schedule at
  a float count: ``lambda count: schedule(jnp.asarray(count, float))`` (as
  :func:`rmsprop_optax.parity.float_count` does).

Examples:
  The same call, ``lr = 0.01`` and a first gradient of 1, gives three different
  first steps: the decay and the initial accumulator differ.

  >>> import jax.numpy as jnp
  >>> from rmsprop_optax import presets
  >>> def first_step(opt):
  ...   params = jnp.zeros(1)
  ...   updates, _ = opt.update(jnp.ones(1), opt.init(params), params)
  ...   return round(float(updates[0]), 5)
  >>> first_step(presets.pytorch(lr=0.01))  # 0.01 / sqrt(0.01): alpha 0.99
  -0.1
  >>> first_step(presets.keras(learning_rate=0.01))  # 0.01 / sqrt(0.1): rho 0.9
  -0.03162
  >>> first_step(presets.tf1(0.01))  # 0.01 / sqrt(0.9 + 0.1): ms starts at 1
  -0.01
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import jax.numpy as jnp
import optax

from rmsprop_optax._quantize import quantized
from rmsprop_optax._rmsprop import rmsprop
from rmsprop_optax._state import AccumulatorDtype

__all__ = (
  'bitsandbytes',
  'dqn_nature',
  'graves2013',
  'keras',
  'lasagne',
  'pytorch',
  'tf1',
  'timm_tf',
)


@contextlib.contextmanager
def _framework_names(**names: str) -> Iterator[None]:
  """Re-raises ``rmsprop``'s argument errors in the framework's own names.

  ``pytorch(alpha=1.5)`` should say ``alpha``, not ``decay``: the user never
  wrote ``decay``. ``names`` maps rmsprop's name to the framework's.
  """
  try:
    yield
  except (ValueError, TypeError) as e:
    message = str(e)
    for ours, theirs in names.items():
      message = re.sub(rf'\b{ours}\b', theirs, message)
    raise type(e)(message) from None


def pytorch(
  lr: optax.ScalarOrSchedule = 1e-2,
  alpha: float = 0.99,
  eps: float = 1e-8,
  weight_decay: float = 0.0,
  momentum: float = 0.0,
  centered: bool = False,
  maximize: bool = False,
) -> optax.GradientTransformationExtraArgs:
  """``torch.optim.RMSprop``: eps outside the root, lr outside the momentum buffer.

  PyTorch (torch/optim/rmsprop.py): ``v = alpha v + (1 - alpha) g^2``;
  ``avg = sqrt(v) + eps`` (centered: ``sqrt(v - m^2) + eps``);
  ``b = momentum b + g / avg``; ``p -= lr b``. Weight decay is coupled L2
  (``g += wd p``, after the ``maximize`` negation).

  An ``lr_scheduler`` stepped after ``optimizer.step()`` is an Optax schedule
  read at the same count: ``ExponentialLR(gamma)`` is
  ``optax.exponential_decay(lr, 1, gamma)``. With momentum and a changing
  learning rate the buffer placement matters (``lr_in_momentum=False`` here);
  ``parity`` checks it under ``ExponentialLR``.

  .. note::
    PyTorch treats a complex parameter as two real ones (``view_as_real``),
    with separate accumulators for the real and imaginary parts; this preset
    uses ``|g|^2``, one accumulator per complex element, as the rest of the
    library does. Real parameters match exactly. PyTorch does not clamp the
    centered variance at 0 (a negative rounding gives NaN there, 0 here).
  """
  with _framework_names(decay='alpha', learning_rate='lr'):
    return rmsprop(
      lr,
      decay=alpha,
      eps=eps,
      eps_in_sqrt=False,
      momentum=momentum,
      lr_in_momentum=False,
      centered=centered,
      weight_decay=weight_decay,
      maximize=maximize,
    )


def keras(
  learning_rate: optax.ScalarOrSchedule = 1e-3,
  rho: float = 0.9,
  momentum: float = 0.0,
  epsilon: float = 1e-7,
  centered: bool = False,
  weight_decay: float | None = None,
  weight_decay_mask: optax.MaskOrFn = None,
) -> optax.GradientTransformationExtraArgs:
  """Keras 3 ``keras.optimizers.RMSprop``: eps inside, lr inside the buffer.

  Keras (keras/src/optimizers/rmsprop.py): ``v = rho v + (1 - rho) g^2``;
  ``inc = lr g / sqrt(v + eps)`` (centered: ``sqrt(v - m^2 + eps)``);
  ``b = momentum b + inc; p -= b``. ``weight_decay`` is decoupled and applied
  before the step, ``p -= p wd lr``; ``weight_decay_mask`` plays the part of
  ``exclude_from_weight_decay``.

  Keras calls its learning-rate schedules with the iteration count before the
  increment, as Optax does, so ``ExponentialDecay(lr, steps, rate)`` is
  ``optax.exponential_decay(lr, steps, rate)`` and ``CosineDecay(lr, steps,
  alpha)`` is ``optax.cosine_decay_schedule(lr, steps, alpha)``.

  .. note::
    Keras 2 (``tf.keras`` legacy) put eps outside the root when
    ``momentum == 0``; Keras 3 always puts it inside. This preset is Keras 3.
    Keras' ``CosineDecay`` computes in float32 even with ``floatx`` float64.
  """
  with _framework_names(decay='rho', eps='epsilon'):
    return rmsprop(
      learning_rate,
      decay=rho,
      eps=epsilon,
      eps_in_sqrt=True,
      momentum=momentum,
      lr_in_momentum=True,
      centered=centered,
      weight_decay=weight_decay,
      decoupled_weight_decay=True,
      weight_decay_mask=weight_decay_mask,
    )


def tf1(
  learning_rate: optax.ScalarOrSchedule,
  decay: float = 0.9,
  momentum: float = 0.0,
  epsilon: float = 1e-10,
  centered: bool = False,
) -> optax.GradientTransformationExtraArgs:
  """TF1 ``tf.compat.v1.train.RMSPropOptimizer`` (the ``ApplyRMSProp`` kernel).

  ``ms`` starts at **one**; ``ms += (g^2 - ms)(1 - decay)``;
  ``mom = momentum mom + lr g / sqrt(ms + eps)`` (centered:
  ``sqrt(ms - mg^2 + eps)``); ``var -= mom``. The learning rate is required.
  This is the optimizer of the TF1-era image recipes (Inception, MobileNet,
  EfficientNet) and of Dopamine's DQN.

  .. note::
    TF1 rounds Python-float hyperparameters to float32 even for float64
    variables (0.9 becomes 0.899999976); this preset keeps full precision, so
    float64 trajectories differ from TF1's at the 1e-8 level for that reason.
  """
  with _framework_names(eps='epsilon'):
    return rmsprop(
      learning_rate,
      decay=decay,
      eps=epsilon,
      eps_in_sqrt=True,
      initial_scale=1.0,
      momentum=momentum,
      lr_in_momentum=True,
      centered=centered,
    )


def timm_tf(
  lr: optax.ScalarOrSchedule = 1e-2,
  alpha: float = 0.9,
  eps: float = 1e-10,
  weight_decay: float = 0.0,
  momentum: float = 0.0,
  centered: bool = False,
  decoupled_decay: bool = False,
  lr_in_momentum: bool = True,
) -> optax.GradientTransformationExtraArgs:
  """timm's ``RMSpropTF``: TF1 semantics in PyTorch (ones init, eps inside).

  ``square_avg`` starts at **one** and follows TF's
  ``square_avg += (g^2 - square_avg)(1 - alpha)``; ``avg = sqrt(square_avg + eps)``
  (centered: ``sqrt(square_avg - grad_avg^2 + eps)``). With momentum,
  ``lr_in_momentum=True`` (TF, the default) accumulates ``lr g / avg`` in the
  buffer and ``p -= buf``; ``False`` accumulates ``g / avg`` and ``p -= lr buf``.
  Weight decay is coupled (``g += wd p``) or, with ``decoupled_decay``,
  ``p *= 1 - lr wd`` before the step. timm's newer ``caution`` option is not
  reproduced. timm selects this optimizer with ``--opt rmsproptf``.
  """
  with _framework_names(decay='alpha', learning_rate='lr'):
    return rmsprop(
      lr,
      decay=alpha,
      eps=eps,
      eps_in_sqrt=True,
      initial_scale=1.0,
      momentum=momentum,
      lr_in_momentum=lr_in_momentum,
      centered=centered,
      weight_decay=weight_decay,
      decoupled_weight_decay=decoupled_decay,
    )


def graves2013(
  learning_rate: optax.ScalarOrSchedule = 1e-4,
  decay: float = 0.95,
  momentum: float = 0.9,
  eps: float = 1e-4,
) -> optax.GradientTransformationExtraArgs:
  """Graves (2013), eq. 38-41: centered RMSprop with momentum (Chainer's RMSpropGraves).

  ``n = d n + (1 - d) g^2``; ``gbar = d gbar + (1 - d) g``;
  ``D = momentum D - lr g / sqrt(n - gbar^2 + eps)``; ``w += D``.
  """
  return rmsprop(
    learning_rate,
    decay=decay,
    eps=eps,
    eps_in_sqrt=True,
    momentum=momentum,
    lr_in_momentum=True,
    centered=True,
  )


def dqn_nature(
  learning_rate: optax.ScalarOrSchedule = 2.5e-4,
  decay: float = 0.95,
  eps: float = 0.01,
) -> optax.GradientTransformationExtraArgs:
  """DQN (Mnih et al. 2015), as in the original Lua code (NeuralQLearner.lua).

  Centered, both averages with decay 0.95, eps 0.01 inside the root, no
  momentum: ``w += lr g / sqrt(g2 - gbar^2 + 0.01)``.

  .. note::
    Dopamine's ``dqn_nature.gin`` uses TF1's optimizer instead (eps 1e-5,
    ``ms`` starting at ones); use :func:`tf1` for that.
  """
  return rmsprop(learning_rate, decay=decay, eps=eps, eps_in_sqrt=True, centered=True)


def lasagne(
  learning_rate: optax.ScalarOrSchedule = 1.0,
  rho: float = 0.9,
  epsilon: float = 1e-6,
) -> optax.GradientTransformationExtraArgs:
  """Lasagne's ``rmsprop``: ``p -= lr g / sqrt(acc + eps)``, no momentum."""
  with _framework_names(decay='rho', eps='epsilon'):
    return rmsprop(learning_rate, decay=rho, eps=epsilon, eps_in_sqrt=True)


def bitsandbytes(
  lr: optax.ScalarOrSchedule = 1e-2,
  alpha: float = 0.99,
  eps: float = 1e-8,
  weight_decay: float = 0.0,
  optim_bits: int = 8,
  min_8bit_size: int = 4096,
  momentum: float = 0,
  centered: bool = False,
) -> optax.GradientTransformationExtraArgs:
  """``bitsandbytes.optim.RMSprop8bit`` (``optim_bits=8``) or ``RMSprop32bit`` (32).

  bitsandbytes 0.50.2 on CPU (``backends/cpu/ops.py``,
  ``_optimizer_update_8bit_blockwise_cpu``): ``g += wd p``;
  ``v = alpha v + (1 - alpha) g^2``; ``p -= lr g / (sqrt(v) + eps)``, with the
  unrounded new ``v``; then ``v`` is requantized. The 8-bit state is the
  signed dynamic map (``create_dynamic_map(signed=True)``, ``name2qmap
  ['dynamic']``), one float32 absmax per 256 elements of the flattened
  tensor, codes chosen by bnb's 65536-bin lookup table; tensors with fewer
  than ``min_8bit_size`` elements keep float32 state, as there.

  Fed the same gradients, the codes and the trajectory agree with bnb's over
  hundreds of steps (``tests/test_parity_bitsandbytes.py``). In a closed
  training loop the two drift apart after a few dozen steps: PyTorch's
  vectorised float32 ``sqrt`` on CPU is not correctly rounded (about 0.7% of
  its results are one ulp low), and one code that lands on its neighbour
  moves the trajectory by about 1e-4.

  Raises:
    ValueError: ``momentum != 0`` (bnb validates it, then ignores it: its
      RMSprop kernels have no momentum buffer), ``centered=True`` (bnb raises
      ``NotImplementedError``), ``alpha == 0`` (likewise), or ``optim_bits``
      other than 8 or 32. For momentum or centered RMSprop with 8-bit state
      use ``rmsprop(..., momentum=..., centered=True,
      accumulator_dtype=quantized(8))``.
  """
  if momentum != 0:
    raise ValueError(
      f'bitsandbytes: momentum={momentum!r}: bitsandbytes accepts momentum in [0, 1) and '
      'ignores it (its RMSprop has no momentum buffer); for momentum with 8-bit state use '
      'rmsprop(..., momentum=..., accumulator_dtype=quantized(8))'
    )
  if centered:
    raise ValueError(
      'bitsandbytes: centered=True: bitsandbytes refuses centered RMSprop '
      '(NotImplementedError); for centered RMSprop with 8-bit state use '
      'rmsprop(..., centered=True, accumulator_dtype=quantized(8))'
    )
  if isinstance(alpha, (int, float)) and alpha == 0:
    raise ValueError('bitsandbytes: alpha=0 is refused by bitsandbytes (NotImplementedError)')
  if optim_bits == 8:
    accumulator_dtype: AccumulatorDtype = quantized(
      8, 256, min_8bit_size, layout='flat', rounding='bitsandbytes', signed=True
    )
  elif optim_bits == 32:
    accumulator_dtype = jnp.float32
  else:
    raise ValueError(f'bitsandbytes: optim_bits must be 8 or 32, got {optim_bits!r}')
  with _framework_names(decay='alpha', learning_rate='lr'):
    return rmsprop(
      lr,
      decay=alpha,
      eps=eps,
      eps_in_sqrt=False,
      weight_decay=weight_decay,
      accumulator_dtype=accumulator_dtype,
    )
