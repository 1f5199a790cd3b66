"""Parity of the presets with the real frameworks: the shared harness and the CLI.

``python -m rmsprop_optax parity`` trains the same small regression with each
preset and with the framework it imitates (``torch.optim.RMSprop``, Keras 3's
``keras.optimizers.RMSprop`` on the JAX backend, ``optax.rmsprop``), from the
same initial parameters and the same minibatches, and prints, for every
framework x configuration x dtype, the largest relative error of the parameter
trajectory::

  err = max over steps t and leaves k of  max|p_ours - p_ref| / max|p_ref|

(the max-norm of the difference of one leaf over the max-norm of that leaf in
the reference, :func:`relative_error`). The bounds are :data:`FLOAT32_BOUND`
and :data:`FLOAT64_BOUND`. A framework that is not installed is reported as
``not installed`` with the command that installs it; the exit status is 2
when it was named with ``--framework`` (the user asked for it), 0 when only
the default "all frameworks" run lacks it.

The test suite (``tests/test_parity_*.py``) runs the same cases through
:func:`measure`. PyTorch and Keras are imported only when a case runs, never
when this module is imported.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rmsprop_optax import presets
from rmsprop_optax._rmsprop import rmsprop

Params = dict[str, np.ndarray]
Trajectory = list[Params]

# The presets reproduce the frameworks within these relative errors (the test
# suite asserts the same bounds). Float32 against a float64 reference: rounding
# of ~6e-8 per operation, accumulated over up to 1,000 steps of moving averages
# and momentum, stays well below 1e-5. Float64 against float64: rounding only
# (~1.1e-16 per operation), with room for a different operation order and for
# accumulation over 1,000 steps.
FLOAT32_BOUND = 1e-5
FLOAT64_BOUND = 1e-10
BOUNDS = {'float32': FLOAT32_BOUND, 'float64': FLOAT64_BOUND}
# Steps of every case: learning-rate schedules change the rate all along the
# run, and the accumulators (memory 1 / (1 - decay): 10 to 100 steps at decay
# 0.9 to 0.99) and momentum buffers reach their steady state.
DEFAULT_STEPS = 300
# Only guards a division by zero for an all-zero reference leaf.
_TINY = 1e-300

FRAMEWORKS = ('torch', 'keras', 'optax', 'bitsandbytes')


def relative_error(actual: Params, expected: Params) -> float:
  """``max_k max|actual[k] - expected[k]| / max|expected[k]|`` over the leaves ``k``.

  The max-norm relative error of each leaf, then the worst leaf. Computed in
  float64 whatever the inputs' dtype.

  Examples:
    >>> import numpy as np
    >>> from rmsprop_optax.parity import relative_error
    >>> ref = {'b': np.array([1.0, -1.0]), 'w': np.array([100.0, 200.0])}
    >>> relative_error({'b': np.array([1.0, -1.01]), 'w': np.array([100.0, 201.0])}, ref)
    0.01...
  """
  worst = 0.0
  for k, b in expected.items():
    a = np.asarray(actual[k], np.float64)
    b = np.asarray(b, np.float64)
    scale = max(float(np.max(np.abs(b))), _TINY)
    worst = max(worst, float(np.max(np.abs(a - b))) / scale)
  return worst


def trajectory_error(actual: Trajectory, expected: Trajectory) -> float:
  """The worst :func:`relative_error` over all steps of two trajectories."""
  if len(actual) != len(expected):
    raise ValueError(f'trajectories differ in length: {len(actual)} vs {len(expected)}')
  return max(relative_error(a, b) for a, b in zip(actual, expected))


class Regression:
  """Least squares ``0.5 * mean |x @ w + b - y|^2`` on fixed minibatches.

  The data are drawn once from a seeded NumPy generator; step ``t`` uses
  minibatch ``t % n_batches``, so the gradient noise never dies out and the
  second-moment estimates stay well away from zero. ``negate=True`` gives the
  gradient of the negated loss (for ``maximize``). Gradients are computed in
  NumPy, in the parameters' dtype, by the same code for every framework.
  """

  def __init__(
    self,
    dtype: str = 'float32',
    *,
    seed: int = 0,
    n_in: int = 6,
    n_out: int = 3,
    batch: int = 8,
    n_batches: int = 16,
    noise: float = 0.3,
    negate: bool = False,
    open_loop: bool = False,
  ) -> None:
    rng = np.random.default_rng(seed)
    self.dtype = np.dtype(dtype)
    self.negate = negate
    # Open loop: every gradient is taken at the initial params, so the
    # gradient stream is the same for every optimizer whatever its trajectory.
    self.open_loop = open_loop
    w_true = rng.normal(size=(n_in, n_out))
    b_true = rng.normal(size=(n_out,))
    x = rng.normal(size=(n_batches, batch, n_in))
    y = x @ w_true + b_true + noise * rng.normal(size=(n_batches, batch, n_out))
    self.x = x.astype(self.dtype)
    self.y = y.astype(self.dtype)
    self.init: Params = {
      'b': rng.normal(size=(n_out,)).astype(self.dtype),
      'w': (rng.normal(size=(n_in, n_out)) * 0.5).astype(self.dtype),
    }

  def grad(self, params: Params, step: int) -> Params:
    """The gradient at ``params`` on minibatch ``step % n_batches``."""
    x = self.x[step % len(self.x)]
    y = self.y[step % len(self.y)]
    if self.open_loop:
      params = self.init
    w = np.asarray(params['w'], self.dtype)
    b = np.asarray(params['b'], self.dtype)
    r = (x @ w + b - y) / self.dtype.type(len(x))
    g = {'b': r.sum(axis=0), 'w': x.T @ r}
    if self.negate:
      g = {k: -v for k, v in g.items()}
    return {k: v.astype(self.dtype) for k, v in g.items()}


def run_optax(tx: optax.GradientTransformation, problem: Regression, steps: int) -> Trajectory:
  """The parameter trajectory of an Optax transformation (``update`` under ``jit``)."""
  params = {k: jnp.asarray(v) for k, v in problem.init.items()}
  if any(p.dtype != problem.dtype for p in params.values()):
    raise RuntimeError(f'{problem.dtype} parameters need jax_enable_x64 (use jax.enable_x64)')
  state = tx.init(params)

  @jax.jit
  def step(params: Any, state: Any, grads: Any) -> tuple[Any, Any]:
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  out: Trajectory = []
  for t in range(steps):
    grads = problem.grad({k: np.asarray(v) for k, v in params.items()}, t)
    params, state = step(params, state, grads)
    out.append({k: np.array(v) for k, v in params.items()})
  return out


def run_torch(
  kwargs: dict[str, Any],
  problem: Regression,
  steps: int,
  *,
  lr_schedule: Callable[[int], float] | None = None,
  scheduler: Callable[[Any], Any] | None = None,
) -> Trajectory:
  """The trajectory of ``torch.optim.RMSprop(**kwargs)``.

  ``lr_schedule(t)`` sets ``param_group['lr']`` before step ``t``;
  ``scheduler(optimizer)`` builds a ``torch.optim.lr_scheduler`` stepped after
  each ``optimizer.step()``, as PyTorch's docs prescribe.
  """
  import torch

  tdtype = {'float32': torch.float32, 'float64': torch.float64}[problem.dtype.name]
  params = {k: torch.tensor(v, dtype=tdtype, requires_grad=True) for k, v in problem.init.items()}
  opt = torch.optim.RMSprop(list(params.values()), foreach=False, **kwargs)
  sched = None if scheduler is None else scheduler(opt)
  return _torch_trajectory(opt, params, problem, steps, lr_schedule=lr_schedule, scheduler=sched)


def _torch_trajectory(
  opt: Any,
  params: dict[str, Any],
  problem: Regression,
  steps: int,
  *,
  lr_schedule: Callable[[int], float] | None = None,
  scheduler: Any = None,
) -> Trajectory:
  """Steps a torch optimizer over ``problem``'s NumPy gradients; the params after each step."""
  import torch

  out: Trajectory = []
  for t in range(steps):
    grads = problem.grad({k: p.detach().numpy() for k, p in params.items()}, t)
    for k, p in params.items():
      p.grad = torch.from_numpy(grads[k])
    if lr_schedule is not None:
      opt.param_groups[0]['lr'] = float(lr_schedule(t))
    opt.step()
    if scheduler is not None:
      scheduler.step()
    out.append({k: p.detach().numpy().copy() for k, p in params.items()})
  return out


def _import_keras() -> Any:
  """Keras 3 on the JAX backend (the backend is fixed when keras is first imported)."""
  if 'keras' not in sys.modules:
    os.environ['KERAS_BACKEND'] = 'jax'
  import keras

  if keras.backend.backend() != 'jax':
    raise RuntimeError(f'keras was imported with the {keras.backend.backend()!r} backend; need jax')
  return keras


@contextlib.contextmanager
def _keras_floatx(keras: Any, dtype: str) -> Iterator[None]:
  # Keras keeps its learning-rate variable (and schedule arithmetic) in floatx;
  # float64 parity needs floatx float64, as a float64 Keras user would set it.
  previous = keras.config.floatx()
  keras.config.set_floatx(dtype)
  try:
    yield
  finally:
    keras.config.set_floatx(previous)


def run_keras(
  kwargs: dict[str, Any],
  problem: Regression,
  steps: int,
  *,
  keras_schedule: Callable[[Any], Any] | None = None,
  eager: bool = False,
) -> Trajectory:
  """The trajectory of Keras 3 ``keras.optimizers.RMSprop(**kwargs)`` (JAX backend).

  ``keras_schedule(keras)`` returns a ``LearningRateSchedule`` passed as
  ``learning_rate``. The step is Keras' own ``stateless_apply`` (what
  ``model.fit`` runs on the JAX backend) under ``jax.jit``: the same
  ``update_step`` code as the eager ``apply``, compiled once instead of
  dispatching every op. ``eager=True`` calls ``optimizer.apply`` on the
  ``keras.Variable`` objects instead, op by op.
  """
  keras = _import_keras()
  with _keras_floatx(keras, problem.dtype.name):
    names = list(problem.init)
    variables = [keras.Variable(problem.init[k], dtype=problem.dtype.name, name=k) for k in names]
    kw = dict(kwargs)
    if keras_schedule is not None:
      kw['learning_rate'] = keras_schedule(keras)
    opt = keras.optimizers.RMSprop(**kw)
    opt.build(variables)

    @jax.jit
    def step(opt_vars: Any, grads: Any, values: Any) -> tuple[Any, Any]:
      return opt.stateless_apply(opt_vars, grads, values)

    opt_vars = [v.value for v in opt.variables]
    values = [v.value for v in variables]
    out: Trajectory = []
    if eager:
      for t in range(steps):
        grads = problem.grad({k: np.asarray(v.value) for k, v in zip(names, variables)}, t)
        opt.apply([jnp.asarray(grads[k]) for k in names], variables)
        out.append({k: np.array(v.value) for k, v in zip(names, variables)})
      return out
    for t in range(steps):
      grads = problem.grad({k: np.asarray(v) for k, v in zip(names, values)}, t)
      values, opt_vars = step(opt_vars, [grads[k] for k in names], values)
      out.append({k: np.array(v) for k, v in zip(names, values)})
  return out


@dataclasses.dataclass(frozen=True)
class Case:
  """One row of the parity matrix.

  ``ours()`` builds the transformation under test; ``reference(problem,
  steps)`` runs the framework itself and returns its trajectory.
  """

  framework: str
  name: str
  ours: Callable[[], optax.GradientTransformation]
  reference: Callable[[Regression, int], Trajectory]
  negate: bool = False
  # The dtypes in which the framework itself computes what the case tests.
  dtypes: tuple[str, ...] = ('float32', 'float64')
  # The framework's keyword arguments (schedules replaced by their name).
  kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
  # Sizes of the regression (``Regression`` keywords): 8-bit state needs
  # leaves of at least 4096 elements.
  problem: dict[str, Any] = dataclasses.field(default_factory=dict)


def measure(case: Case, dtype: str, steps: int = DEFAULT_STEPS) -> float:
  """Max relative trajectory error of ``case`` in ``dtype`` over ``steps`` steps."""
  x64 = jax.enable_x64(True) if dtype == 'float64' else contextlib.nullcontext()
  with x64:
    problem = Regression(dtype, negate=case.negate, **case.problem)
    expected = case.reference(problem, steps)
    actual = run_optax(case.ours(), problem, steps)
  return trajectory_error(actual, expected)


# -- the matrix ----------------------------------------------------------------

# A learning rate that changes every step: exponential decay, in Optax and as
# the framework's own scheduler (torch ExponentialLR multiplies by gamma after
# each step, i.e. lr_t = lr_0 gamma^t, read with the count before the increment).
SCHEDULE_LR0 = 3e-2
SCHEDULE_GAMMA = 0.99


def float_count(schedule: optax.Schedule) -> optax.Schedule:
  """``schedule`` evaluated at a floating-point count.

  Optax passes an int32 count, and ``int32 / int`` is float32 in JAX even with
  ``jax_enable_x64``: ``optax.exponential_decay`` and friends then return
  float32 learning rates, 1e-8-relative off the float64 values a float64
  framework computes. Converting the count to the default float dtype first
  (float64 under x64) keeps the schedule in full precision.

  Examples:
    >>> import jax, jax.numpy as jnp, optax
    >>> from rmsprop_optax.parity import float_count
    >>> schedule = optax.exponential_decay(1.0, transition_steps=1, decay_rate=0.9)
    >>> count = jnp.asarray(3, jnp.int32)  # what Optax passes
    >>> with jax.enable_x64(True):
    ...   print(schedule(count).dtype, float_count(schedule)(count).dtype)
    float32 float64
  """
  return lambda count: schedule(jnp.asarray(count, jnp.result_type(float)))


def _optax_exponential() -> optax.Schedule:
  return float_count(
    optax.exponential_decay(SCHEDULE_LR0, transition_steps=1, decay_rate=SCHEDULE_GAMMA)
  )


def _cosine_warm_restarts() -> optax.Schedule:
  """A non-monotone learning rate: cosine with period 50 steps, in [0.2, 1] x 2e-2."""
  return lambda count: 2e-2 * (0.6 + 0.4 * jnp.cos(2 * jnp.pi * count / 50))


def _torch_case(
  name: str,
  kwargs: dict[str, Any],
  *,
  schedule: str | None = None,
) -> Case:
  """``presets.pytorch(**kwargs)`` vs ``torch.optim.RMSprop(**kwargs)``.

  ``schedule``: ``'exponential'`` (torch ``ExponentialLR`` mirrored by
  ``optax.exponential_decay``) or ``'cosine'`` (``param_group['lr']`` set each
  step to the Optax schedule's value).
  """
  negate = bool(kwargs.get('maximize', False))

  def ours() -> optax.GradientTransformation:
    kw = dict(kwargs)
    if schedule == 'exponential':
      kw['lr'] = _optax_exponential()
    elif schedule == 'cosine':
      kw['lr'] = _cosine_warm_restarts()
    return presets.pytorch(**kw)

  def reference(problem: Regression, steps: int) -> Trajectory:
    kw = dict(kwargs)
    if schedule == 'exponential':
      import torch

      kw['lr'] = SCHEDULE_LR0
      return run_torch(
        kw,
        problem,
        steps,
        scheduler=lambda opt: torch.optim.lr_scheduler.ExponentialLR(opt, gamma=SCHEDULE_GAMMA),
      )
    if schedule == 'cosine':
      sched = _cosine_warm_restarts()
      kw['lr'] = float(sched(0))
      return run_torch(kw, problem, steps, lr_schedule=lambda t: float(sched(t)))
    return run_torch(kw, problem, steps)

  return Case('torch', name, ours, reference, negate=negate, kwargs=dict(kwargs))


def _keras_case(name: str, kwargs: dict[str, Any], *, schedule: str | None = None) -> Case:
  """``presets.keras(**kwargs)`` vs ``keras.optimizers.RMSprop(**kwargs)``.

  ``schedule``: ``'exponential'`` (Keras ``ExponentialDecay`` and
  ``optax.exponential_decay``) or ``'cosine'`` (Keras ``CosineDecay`` and
  ``optax.cosine_decay_schedule``), starting at ``SCHEDULE_LR0``.
  """

  def ours() -> optax.GradientTransformation:
    kw = dict(kwargs)
    if schedule == 'exponential':
      kw['learning_rate'] = float_count(
        optax.exponential_decay(SCHEDULE_LR0, transition_steps=20, decay_rate=0.5)
      )
    elif schedule == 'cosine':
      kw['learning_rate'] = float_count(
        optax.cosine_decay_schedule(SCHEDULE_LR0, decay_steps=400, alpha=0.1)
      )
    return presets.keras(**kw)

  def keras_schedule(keras: Any) -> Any:
    sch = keras.optimizers.schedules
    if schedule == 'exponential':
      return sch.ExponentialDecay(SCHEDULE_LR0, decay_steps=20, decay_rate=0.5)
    return sch.CosineDecay(SCHEDULE_LR0, decay_steps=400, alpha=0.1)

  def reference(problem: Regression, steps: int) -> Trajectory:
    return run_keras(kwargs, problem, steps, keras_schedule=keras_schedule if schedule else None)

  # Keras' CosineDecay computes in float32 even with floatx float64 (it builds
  # its constants with convert_to_tensor(initial_learning_rate), float32), so in
  # float64 it agrees with any float64 schedule only to ~1e-8: float32 only.
  # ExponentialDecay follows floatx and is checked in both dtypes.
  dtypes = ('float32',) if schedule == 'cosine' else ('float32', 'float64')
  return Case('keras', name, ours, reference, dtypes=dtypes, kwargs=dict(kwargs))


def _optax_case(name: str, kwargs: dict[str, Any], ours: Callable[[], Any] | None = None) -> Case:
  """``rmsprop_optax.rmsprop(**kwargs)`` (or ``ours``) vs ``optax.rmsprop(**kwargs)``."""

  def build() -> optax.GradientTransformation:
    return ours() if ours is not None else rmsprop(**kwargs)

  def reference(problem: Regression, steps: int) -> Trajectory:
    return run_optax(optax.rmsprop(**kwargs), problem, steps)

  return Case('optax', name, build, reference, kwargs=dict(kwargs))


def torch_cases() -> list[Case]:
  """``presets.pytorch`` against ``torch.optim.RMSprop``."""
  return [
    _torch_case('defaults lr=1e-2', {}),
    _torch_case('momentum=0.9', {'lr': 1e-2, 'momentum': 0.9}),
    _torch_case('centered', {'lr': 1e-2, 'centered': True}),
    _torch_case('centered momentum=0.9', {'lr': 3e-3, 'centered': True, 'momentum': 0.9}),
    _torch_case('weight_decay=0.1', {'lr': 1e-2, 'weight_decay': 0.1}),
    _torch_case('maximize', {'lr': 1e-2, 'maximize': True, 'momentum': 0.5}),
    _torch_case('alpha=0.9 eps=1e-3', {'lr': 1e-2, 'alpha': 0.9, 'eps': 1e-3}),
    _torch_case('alpha=0.5 eps=0.1', {'lr': 2e-2, 'alpha': 0.5, 'eps': 0.1}),
    _torch_case('alpha=0.999 eps=1e-6', {'lr': 1e-2, 'alpha': 0.999, 'eps': 1e-6}),
    _torch_case('ExponentialLR momentum=0.9', {'momentum': 0.9}, schedule='exponential'),
    _torch_case(
      'lr set each step, centered momentum wd',
      {'momentum': 0.9, 'centered': True, 'weight_decay': 1e-2},
      schedule='cosine',
    ),
  ]


def keras_cases() -> list[Case]:
  """``presets.keras`` against Keras 3 ``keras.optimizers.RMSprop`` (JAX backend)."""
  return [
    _keras_case('defaults', {}),
    _keras_case('lr=1e-2 momentum=0.9', {'learning_rate': 1e-2, 'momentum': 0.9}),
    _keras_case('centered', {'learning_rate': 1e-2, 'centered': True}),
    _keras_case(
      'centered momentum=0.9 rho=0.95',
      {'learning_rate': 3e-3, 'centered': True, 'momentum': 0.9, 'rho': 0.95},
    ),
    _keras_case('weight_decay=0.1 (decoupled)', {'learning_rate': 1e-2, 'weight_decay': 0.1}),
    _keras_case('epsilon=1e-2', {'learning_rate': 1e-2, 'epsilon': 1e-2}),
    _keras_case('ExponentialDecay momentum=0.9', {'momentum': 0.9}, schedule='exponential'),
    _keras_case(
      'CosineDecay centered wd=0.05',
      {'centered': True, 'weight_decay': 0.05, 'momentum': 0.5},
      schedule='cosine',
    ),
  ]


def optax_cases() -> list[Case]:
  """``rmsprop(...)`` and the presets against ``optax.rmsprop`` on every shared option."""
  sched = _optax_exponential()
  return [
    _optax_case('defaults lr=1e-2', {'learning_rate': 1e-2}),
    _optax_case('decay=0.99 eps=1e-4', {'learning_rate': 1e-2, 'decay': 0.99, 'eps': 1e-4}),
    _optax_case('eps_in_sqrt=False', {'learning_rate': 1e-2, 'eps': 1e-3, 'eps_in_sqrt': False}),
    _optax_case('initial_scale=1', {'learning_rate': 1e-2, 'initial_scale': 1.0}),
    _optax_case('centered', {'learning_rate': 1e-2, 'centered': True}),
    _optax_case('momentum=0.9', {'learning_rate': 1e-2, 'momentum': 0.9}),
    _optax_case(
      'momentum=0.9 nesterov', {'learning_rate': 1e-2, 'momentum': 0.9, 'nesterov': True}
    ),
    _optax_case('bias_correction', {'learning_rate': 1e-2, 'bias_correction': True, 'eps': 1e-6}),
    _optax_case(
      'centered bias_correction momentum',
      {
        'learning_rate': 3e-3,
        'centered': True,
        'bias_correction': True,
        # At t = 1 the bias-corrected variance is 0 up to rounding; in
        # float32 that rounding (~1e-7 g^2) must stay small next to eps,
        # or the two implementations' first steps differ by noise / eps.
        'eps': 0.1,
        'momentum': 0.9,
      },
    ),
    _optax_case('schedule momentum=0.9', {'learning_rate': sched, 'momentum': 0.9}),
    _optax_case(
      'everything shared',
      {
        'learning_rate': sched,
        'decay': 0.95,
        'eps': 1e-3,
        'initial_scale': 0.5,
        'eps_in_sqrt': False,
        'centered': True,
        'momentum': 0.8,
        'nesterov': True,
        'bias_correction': True,
      },
    ),
    # Presets that are plain optax.rmsprop with their own defaults.
    _optax_case(
      'presets.tf1 momentum=0.9',
      {'learning_rate': sched, 'initial_scale': 1.0, 'eps': 1e-10, 'momentum': 0.9},
      ours=lambda: presets.tf1(sched, momentum=0.9),
    ),
    _optax_case(
      'presets.lasagne lr=1e-2',
      {'learning_rate': 1e-2, 'eps': 1e-6},
      ours=lambda: presets.lasagne(1e-2),
    ),
    _optax_case(
      'presets.keras momentum=0.9',
      {'learning_rate': sched, 'eps': 1e-7, 'momentum': 0.9},
      ours=lambda: presets.keras(sched, momentum=0.9),
    ),
  ]


def run_bitsandbytes(
  optim_bits: int,
  kwargs: dict[str, Any],
  problem: Regression,
  steps: int,
  *,
  lr_schedule: Callable[[int], float] | None = None,
) -> Trajectory:
  """The trajectory of ``bitsandbytes.optim.RMSprop8bit`` / ``RMSprop32bit`` on CPU tensors."""
  import bitsandbytes as bnb
  import torch

  params = {k: torch.tensor(v, requires_grad=True) for k, v in problem.init.items()}
  optimizer = {8: bnb.optim.RMSprop8bit, 32: bnb.optim.RMSprop32bit}[optim_bits]
  opt = optimizer(list(params.values()), **kwargs)
  return _torch_trajectory(opt, params, problem, steps, lr_schedule=lr_schedule)


def bitsandbytes_cases() -> list[Case]:
  """``presets.bitsandbytes`` against bitsandbytes' 8-bit and 32-bit RMSprop (float32 only).

  The regression's ``w`` has 128 x 64 = 8192 elements, above bitsandbytes'
  ``min_8bit_size`` (4096): it gets 8-bit state, ``b`` float32 state.

  Open loop (every gradient taken at the initial params): PyTorch's
  vectorised float32 ``sqrt`` on CPU is not correctly rounded (about 0.7% of
  its results are one ulp low; XLA's is exact), so the params differ from
  bitsandbytes' in the last bit after the first step. Fed back through the
  gradient, such a bit sooner or later moves a state value across a bin of
  the code table, and one flipped code moves the trajectory by about 1e-4.
  With the same gradient stream for both, the codes and the trajectory agree
  (``tests/test_parity_bitsandbytes.py`` checks every code).
  """
  sizes = {'n_in': 128, 'n_out': 64, 'open_loop': True}

  def case(name: str, optim_bits: int, kwargs: dict[str, Any], scheduled: bool = False) -> Case:
    lr = kwargs.get('lr', 1e-2)
    schedule = _optax_exponential() if scheduled else None

    def ours() -> optax.GradientTransformation:
      kw = {k: v for k, v in kwargs.items() if k != 'lr'}
      return presets.bitsandbytes(schedule or lr, optim_bits=optim_bits, **kw)

    def reference(problem: Regression, steps: int) -> Trajectory:
      lr_schedule = None if schedule is None else (lambda t: float(schedule(t)))
      return run_bitsandbytes(optim_bits, kwargs, problem, steps, lr_schedule=lr_schedule)

    return Case(
      'bitsandbytes', name, ours, reference, dtypes=('float32',), kwargs=kwargs, problem=sizes
    )

  return [
    case('RMSprop8bit defaults', 8, {}),
    case('RMSprop8bit lr set each step', 8, {}, scheduled=True),
    case('RMSprop8bit alpha=0.9 weight_decay=0.01', 8, {'alpha': 0.9, 'weight_decay': 0.01}),
    case('RMSprop32bit lr set each step', 32, {}, scheduled=True),
  ]


def all_cases() -> list[Case]:
  return torch_cases() + keras_cases() + optax_cases() + bitsandbytes_cases()


# How to install each framework: the versions the test extra pins, CPU builds.
INSTALL_HINTS = {
  'torch': "pip install 'torch==2.13.0' --index-url https://download.pytorch.org/whl/cpu",
  'keras': "pip install 'keras>=3.15' (run on the JAX backend: KERAS_BACKEND=jax)",
  'optax': "pip install 'optax'",
  'bitsandbytes': "pip install 'bitsandbytes==0.50.2'",
}
ALL_FRAMEWORKS_HINT = "pip install 'rmsprop_optax[test]' installs all of them"


def installed(framework: str) -> bool:
  """Whether ``framework`` ('torch', 'keras' or 'optax') can be imported."""
  return importlib.util.find_spec(framework) is not None


# -- command line --------------------------------------------------------------


@dataclasses.dataclass
class Row:
  framework: str
  name: str
  errors: dict[str, float | None]  # dtype -> error (None: not run)
  status: str  # 'pass', 'FAIL', 'not installed', 'error: ...'


def run_matrix(
  frameworks: Sequence[str],
  dtypes: Sequence[str],
  steps: int,
  *,
  cases: Sequence[Case] | None = None,
  match: str | None = None,
) -> list[Row]:
  """Runs the matrix; frameworks that are not installed give one ``not installed`` row."""
  rows: list[Row] = []
  cases = all_cases() if cases is None else cases
  for fw in frameworks:
    if not installed(fw):
      rows.append(Row(fw, '(all)', {d: None for d in dtypes}, 'not installed'))
      continue
    for case in cases:
      if case.framework != fw or (match and match not in case.name):
        continue
      errors: dict[str, float | None] = {}
      status = 'pass'
      for dtype in dtypes:
        if dtype not in case.dtypes:
          errors[dtype] = None
          continue
        try:
          err = measure(case, dtype, steps)
        except Exception as e:  # report and go on: one broken case must not hide the rest
          errors[dtype] = None
          status = f'error: {type(e).__name__}: {e}'.splitlines()[0][:80]
          continue
        errors[dtype] = err
        if not err <= BOUNDS[dtype]:
          status = 'FAIL' if status == 'pass' else status
      rows.append(Row(fw, case.name, errors, status))
  return rows


def _cell(value: float | None) -> str:
  return 'n/a' if value is None else f'{value:.2e}'


def format_table(rows: Sequence[Row], dtypes: Sequence[str]) -> str:
  """A Markdown table: framework | configuration | error per dtype | status."""
  head = ['framework', 'configuration'] + [f'{d} (<= {BOUNDS[d]:.0e})' for d in dtypes] + ['status']
  body = []
  for r in rows:
    errs = [_cell(r.errors.get(d)) for d in dtypes]
    body.append([r.framework, r.name] + errs + [r.status])
  widths = [max(len(str(line[i])) for line in [head] + body) for i in range(len(head))]

  def fmt(cells: Sequence[str]) -> str:
    return '| ' + ' | '.join(str(c).ljust(w) for c, w in zip(cells, widths)) + ' |'

  sep = '|' + '|'.join('-' * (w + 2) for w in widths) + '|'
  return '\n'.join([fmt(head), sep] + [fmt(b) for b in body])


def main(argv: list[str] | None = None) -> int:
  """``python -m rmsprop_optax parity``.

  Returns 1 if any installed case fails, else 2 if a framework named with
  ``--framework`` is not installed, else 0.
  """
  parser = argparse.ArgumentParser(
    prog='python -m rmsprop_optax parity',
    description=(
      'Train a small regression with each preset and with the framework it '
      'imitates; print the max relative error of the parameter trajectories '
      '(max over steps and leaves of max|ours - ref| / max|ref|).'
    ),
  )
  parser.add_argument('--steps', type=int, default=DEFAULT_STEPS, help='steps per run')
  parser.add_argument(
    '--framework',
    action='append',
    choices=FRAMEWORKS,
    help='restrict to this framework (repeatable); default: all',
  )
  parser.add_argument(
    '--dtype', action='append', choices=sorted(BOUNDS), help='restrict to this dtype (repeatable)'
  )
  parser.add_argument('--match', default=None, help='only configurations whose name contains this')
  args = parser.parse_args(argv)
  if args.steps < 1:
    parser.error('--steps must be >= 1')
  frameworks = args.framework or list(FRAMEWORKS)
  dtypes = args.dtype or ['float32', 'float64']
  rows = run_matrix(frameworks, dtypes, args.steps, match=args.match)
  print(
    f'Parity over {args.steps} steps; error = max over steps and leaves of max|ours - ref| / max|ref|.'
  )
  print(format_table(rows, dtypes))
  failed = [r for r in rows if r.status not in ('pass', 'not installed')]
  missing = sorted({r.framework for r in rows if r.status == 'not installed'})
  summary = f'{len(rows) - len(failed) - len(missing)} passed, {len(failed)} failed'
  if missing:
    summary += f'; not installed: {", ".join(missing)}'
  print(summary)
  for fw in missing:
    print(f'{fw} is not installed; to compare with it: {INSTALL_HINTS[fw]}')
  if missing:
    print(f'({ALL_FRAMEWORKS_HINT})')
  if failed:
    return 1
  asked = [fw for fw in missing if args.framework and fw in args.framework]
  if asked:
    print(
      f'error: --framework {" ".join(asked)} was asked for but cannot be imported; '
      'nothing was compared with it',
      file=sys.stderr,
    )
    return 2
  return 0
