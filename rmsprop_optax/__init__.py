"""RMSprop in every variant that matters, as pure Optax gradient transformations.

Three tiers:

- :func:`scale_by_rms`, :func:`scale_by_centered_rms`: rescaling only.
- :func:`rmsprop`: learning rate, sign, momentum, weight decay, maximize.
- :mod:`rmsprop_optax.presets`: framework-exact constructors.
- :func:`quantized`: 8- or 4-bit blockwise state for any of them.
"""

from rmsprop_optax import presets as presets
from rmsprop_optax import schedules as schedules
from rmsprop_optax._quantize import Quantized as Quantized
from rmsprop_optax._quantize import QuantizedArray as QuantizedArray
from rmsprop_optax._quantize import QuantizedTree as QuantizedTree
from rmsprop_optax._quantize import quantized as quantized
from rmsprop_optax._rmsprop import ScheduledTraceState as ScheduledTraceState
from rmsprop_optax._rmsprop import rmsprop as rmsprop
from rmsprop_optax._transforms import ScaleByCenteredRmsState as ScaleByCenteredRmsState
from rmsprop_optax._transforms import ScaleByRmsState as ScaleByRmsState
from rmsprop_optax._transforms import scale_by_centered_rms as scale_by_centered_rms
from rmsprop_optax._transforms import scale_by_rms as scale_by_rms
from rmsprop_optax.diagnostics import StepMemory as StepMemory
from rmsprop_optax.diagnostics import effective_learning_rate as effective_learning_rate
from rmsprop_optax.diagnostics import find_rms_state as find_rms_state
from rmsprop_optax.diagnostics import memory_length as memory_length
from rmsprop_optax.diagnostics import step_memory as step_memory

__version__ = '0.2.0'

__all__ = (
  'Quantized',
  'QuantizedArray',
  'QuantizedTree',
  'ScaleByCenteredRmsState',
  'ScaleByRmsState',
  'ScheduledTraceState',
  'StepMemory',
  'effective_learning_rate',
  'find_rms_state',
  'memory_length',
  'presets',
  'quantized',
  'rmsprop',
  'scale_by_centered_rms',
  'scale_by_rms',
  'step_memory',
  'schedules',
)
