"""What the test files share: the error metric, the tolerance bounds, the float64 reference.

- :func:`max_rel_error`: the relative-error metric of the suite (per leaf,
  against the leaf's largest magnitude); :func:`max_elementwise_rel_error`
  where each element is its own scale (outputs compared with Optax's).
- The bounds and step counts of the numeric comparisons (each constant says
  what it bounds and why). The parity bounds are :mod:`rmsprop_optax.parity`'s,
  the ones ``python -m rmsprop_optax parity`` reports against.
- Running an optimizer: :func:`scan_trajectory` (params after each step, one
  jitted ``lax.scan``), :func:`scan_updates` (a transformation's outputs and
  states), :func:`run_loop` (a Python loop, for code that is not traced);
  :func:`contrast` (a convention against a framework, float64);
  :func:`small_params` and :func:`normal_grads`, a small tree and its gradients.
- Optional dependencies: :func:`need` (the suite's one policy for them).
- :class:`RmspropReference`: the float64 NumPy reference of ``rmsprop(...)``,
  written from the update equations, one line per equation. It imports nothing
  from ``rmsprop_optax``; :func:`rms_outputs` runs it as the tier-1 transforms
  (``scale_by_rms`` / ``scale_by_centered_rms``).
- Shared cases: :func:`trajectory` (runs this reference or one of
  ``framework_refs``), :func:`schedule_pair` (a schedule in JAX and the same in
  NumPy), :func:`to_f64`, :func:`bits` (bit-for-bit comparisons).
- :func:`run_worker`: runs a subprocess worker on 8 virtual CPU devices and
  returns the one ``RESULT {json}`` line it prints; :func:`worker_env`, the
  environment every subprocess worker gets.

Imported by test files and by the subprocess workers (``_sharding_worker.py``),
so it needs no pytest.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rmsprop_optax import parity

Params = dict[str, np.ndarray]
Rate = float | Callable[[int], float]

# -- bounds ---------------------------------------------------------------------

# Largest max_rel_error of a float32 (FLOAT32_BOUND) or float64 (FLOAT64_BOUND)
# run against a float64 reference, and the steps of every parity case: the
# parity CLI's own, defined (and explained) once, in rmsprop_optax.parity.
FLOAT32_BOUND = parity.FLOAT32_BOUND
FLOAT64_BOUND = parity.FLOAT64_BOUND
BOUNDS = parity.BOUNDS
PARITY_STEPS = parity.DEFAULT_STEPS
# The hardest configurations also run this long: presets reproduce their
# framework over 1,000 steps, where float32 rounding has most time to accumulate.
LONG_STEPS = 1000
# Contrast tests: a wrong convention (eps placement, lr placement, weight decay
# form, initial accumulator) must miss the reference by more than CONTRAST
# after CONTRAST_STEPS steps: 10x FLOAT32_BOUND, so no bound could hide it.
CONTRAST = 1e-4
CONTRAST_STEPS = 100


# -- the metric -----------------------------------------------------------------


def max_rel_error(actual: Any, expected: Any) -> float:
  """``max|actual - expected| / max|expected|`` per leaf, the worst leaf; float64.

  Normalised by the leaf's largest magnitude, not element by element, so an
  element that crosses zero does not turn an absolute 1e-9 into a huge ratio.
  A leaf whose expected value is all zero must be exactly zero (error 0, else
  inf). ``actual`` and ``expected`` are pytrees of the same structure: pass a
  list of per-step trees to normalise each step by its own scale (the parity
  tests' trajectory error), or stacked trajectories to normalise by the scale
  of the whole run.
  """
  a_leaves, a_def = jax.tree.flatten(actual)
  e_leaves, e_def = jax.tree.flatten(expected)
  assert a_def == e_def, f'different trees: {a_def} vs {e_def}'
  worst = 0.0
  for a, e in zip(a_leaves, e_leaves):
    a = np.asarray(a, np.float64)
    e = np.asarray(e, np.float64)
    scale = float(np.max(np.abs(e), initial=0.0))
    diff = float(np.max(np.abs(a - e), initial=0.0))
    if scale == 0.0:
      worst = max(worst, 0.0 if diff == 0.0 else float('inf'))
    else:
      worst = max(worst, diff / scale)
  return worst


def max_elementwise_rel_error(actual: Any, expected: Any) -> float:
  """``max |actual - expected| / |expected|`` over every element of every leaf; float64.

  Each element is its own scale: for outputs without zeros whose every element
  matters alike (a transformation's outputs against Optax's), where a bound
  measured this way must not be diluted by the leaf's largest element.
  """
  a_leaves, a_def = jax.tree.flatten(actual)
  e_leaves, e_def = jax.tree.flatten(expected)
  assert a_def == e_def, f'different trees: {a_def} vs {e_def}'
  return max(
    float(np.max(np.abs(np.asarray(a, np.float64) - e) / np.abs(e)))
    for a, e in ((a, np.asarray(e, np.float64)) for a, e in zip(a_leaves, e_leaves))
  )


# -- running an optimizer -------------------------------------------------------


def small_params() -> dict[str, jax.Array]:
  """Two float32 leaves, a 2x3 matrix and a 2-vector, no element zero."""
  return {'w': jnp.linspace(-1.0, 1.0, 6).reshape(2, 3), 'b': jnp.array([0.5, -0.25])}


def normal_grads(params: Any, step: int) -> Any:
  """Standard normal gradients for ``params`` at ``step`` (NumPy, seeded by the step)."""
  rng = np.random.default_rng(step)
  return jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), p.dtype), params)


def run_loop(
  opt: optax.GradientTransformation,
  params: Any,
  grad_fn: Callable[[Any, int], Any],
  steps: int,
  *,
  jit: bool = False,
) -> tuple[Any, Any]:
  """``steps`` steps in a Python loop from ``params``; the final params and state.

  ``grad_fn(params, t)`` gives the gradient of the 0-based step ``t``; ``jit``
  compiles ``opt.update`` once. For what :func:`scan_trajectory` cannot trace.
  """
  state = opt.init(params)
  update = jax.jit(opt.update) if jit else opt.update
  for t in range(steps):
    updates, state = update(grad_fn(params, t), state, params)
    params = optax.apply_updates(params, updates)
  return params, state


def scan_trajectory(
  opt: optax.GradientTransformation,
  params: Any,
  xs: Any,
  grad_fn: Callable[[Any, Any], Any] | None = None,
) -> Any:
  """The params after each step, stacked along a leading axis: one jitted ``lax.scan``.

  One step per slice of ``xs`` (leading axis); ``grad_fn(params, x)`` gives the
  step's gradient (default: ``x`` is the gradient).
  """
  grad_of = (lambda p, x: x) if grad_fn is None else grad_fn

  def body(carry: Any, x: Any) -> tuple[Any, Any]:
    p, s = carry
    updates, s = opt.update(grad_of(p, x), s, p)
    p = optax.apply_updates(p, updates)
    return (p, s), p

  return jax.jit(lambda p, xs: jax.lax.scan(body, (p, opt.init(p)), xs)[1])(params, xs)


def scan_updates(
  tx: optax.GradientTransformation, grads: Any, params: Any | None = None
) -> tuple[Any, Any]:
  """``tx``'s output and state after each gradient of ``grads`` (leading axis): one jitted scan.

  ``params`` goes to every ``update`` as it is (None: none); the state is
  initialised from ``params``, or from the shape of one gradient.
  """
  init = jax.tree.map(lambda g: g[0], grads) if params is None else params

  def body(state: Any, g: Any) -> tuple[Any, Any]:
    out, state = tx.update(g, state, params)
    return state, (out, state)

  return jax.jit(lambda gs: jax.lax.scan(body, tx.init(init), gs)[1])(grads)


def contrast(
  tx: optax.GradientTransformation, reference: Callable[[parity.Regression, int], Any]
) -> float:
  """Float64 error of ``tx`` against ``reference(problem, steps)`` over CONTRAST_STEPS.

  ``reference`` runs a framework on :class:`rmsprop_optax.parity.Regression`
  (as ``parity.run_torch`` does). A wrong convention must miss it by more
  than CONTRAST; the right one must stay within FLOAT64_BOUND.
  """
  case = parity.Case('contrast', 'contrast', lambda: tx, reference)
  return parity.measure(case, 'float64', CONTRAST_STEPS)


# -- optional dependencies --------------------------------------------------------

# The policy, for every test file: the test tools (pytest, pytest-xdist,
# hypothesis, nbmake) are imported directly; every other package a test needs
# beyond the core dependencies (the reference frameworks, the examples extra)
# comes through need(): skipped, with the reason, where it is not installed,
# and an error where REQUIRE_EXTRAS is set (CI sets it: the `test` extra
# installs them all, so nothing is skipped there unseen).
REQUIRE_EXTRAS = 'RMSPROP_OPTAX_REQUIRE_EXTRAS'


def need(module: str) -> Any:
  """Imports an optional dependency of a test; skips the test (or file) where it is missing.

  With the environment variable ``RMSPROP_OPTAX_REQUIRE_EXTRAS`` set, a missing
  package is an error instead.
  """
  import importlib
  import os

  if os.environ.get(REQUIRE_EXTRAS):
    return importlib.import_module(module)
  import pytest

  return pytest.importorskip(
    module, reason=f'{module} is not installed (the `test` extra: pip install -e ".[test]")'
  )


# -- shared cases ---------------------------------------------------------------


def to_f64(tree: dict[str, Any]) -> Params:
  """A dict of arrays as float64 NumPy (complex stays complex128)."""
  return {
    k: np.asarray(v, np.complex128 if np.iscomplexobj(v) else np.float64) for k, v in tree.items()
  }


def bits(tree: Any) -> list[np.ndarray]:
  """Each leaf's bytes: equal bits means bit for bit (NaN == NaN, -0.0 != 0.0)."""
  return [np.atleast_1d(np.asarray(x)).view(np.uint8).copy() for x in jax.tree.leaves(tree)]


def schedule_pair(formula: Callable[[Any, Any], Any]) -> tuple[Callable, Callable]:
  """``formula(count, xp)`` as an Optax schedule (``xp = jnp``) and in NumPy (``xp = np``).

  One formula for both sides, so the schedule the optimizer reads and the one
  the reference reads cannot drift apart.
  """
  return (lambda count: formula(count, jnp)), (lambda count: float(formula(count, np)))


def trajectory(
  ref: Any, init: dict[str, Any], grad: Callable[[Params, int], Params], steps: int
) -> list[Params]:
  """Runs a reference ``steps`` steps from ``init``; the params after each step.

  ``ref`` is a :class:`RmspropReference` or a ``framework_refs`` class: anything
  with ``step(params, grads, t)`` returning the new params; ``grad(params, t)``
  gives the gradient at the 0-based step ``t``.
  """
  params = to_f64(init)
  out = []
  for t in range(steps):
    params = ref.step(params, grad(params, t), t)
    out.append(params)
  return out


# -- the float64 reference of rmsprop(...) --------------------------------------


def _value(x: Rate, count: int) -> float:
  return float(x(count)) if callable(x) else float(x)


@dataclass
class RmspropReference:
  """``rmsprop(...)`` in float64 on a dict of NumPy arrays, one line per equation.

  Per element, ``t`` the step count after the increment, every schedule read at
  ``t - 1``::

    g    = -g                                   (maximize)
    g    = g + wd p                             (coupled weight decay, masked)
    nu   = decay nu + (1 - decay) |g|^2         (nu starts at initial_scale)
    mu   = md mu + (1 - md) g                   (centered; md = mean_decay or decay)
    s    = nu / (1 - decay^t)                   (bias correction; mu likewise with md)
    s    = max(s - |mu|^2, 0)                   (centered)
    d    = sqrt(s + eps)  or  sqrt(s) + eps     (eps_in_sqrt)
    x    = g / d, and 0 where d == 0
    momentum, lr in the buffer:   b = beta b + lr x;  out = b  (Nesterov: lr x + beta b)
    momentum, lr outside:         b = beta b + x;     out = lr b  (Nesterov: lr (x + beta b))
    no momentum:                  out = lr x
    out  = out + lr wd p                        (decoupled weight decay, masked)
    update = -out
  """

  learning_rate: Rate
  decay: Rate = 0.9
  eps: float = 1e-8
  momentum: Rate | None = None
  nesterov: bool = False
  centered: bool = False
  mean_decay: float | None = None
  bias_correction: bool = False
  eps_in_sqrt: bool = True
  initial_scale: float = 0.0
  lr_in_momentum: bool = True
  weight_decay: Rate = 0.0
  decoupled_weight_decay: bool = False
  weight_decay_mask: dict[str, bool] | None = None
  maximize: bool = False
  count: int = 0
  nu: Params = field(default_factory=dict)
  mu: Params = field(default_factory=dict)
  buf: Params = field(default_factory=dict)

  def init(self, params: Params) -> None:
    for k, p in params.items():
      self.nu[k] = np.full(p.shape, self.initial_scale, np.float64)
      self.mu[k] = np.zeros(p.shape, np.result_type(p.dtype, np.float64))
      self.buf[k] = np.zeros(p.shape, np.result_type(p.dtype, np.float64))

  def update(self, grads: Params, params: Params) -> Params:
    """Returns the updates (to be added to the params) and advances the state."""
    t = self.count + 1
    lr = _value(self.learning_rate, self.count)
    rho = _value(self.decay, self.count)
    md = rho if self.mean_decay is None else float(self.mean_decay)
    wd = _value(self.weight_decay, self.count)
    beta = None if self.momentum is None else _value(self.momentum, self.count)
    out = {}
    for k in grads:
      g = np.asarray(grads[k]).astype(np.result_type(grads[k].dtype, np.float64))
      p = np.asarray(params[k]).astype(g.dtype)
      decay_this = self.weight_decay_mask is None or self.weight_decay_mask[k]
      if self.maximize:
        g = -g
      if wd and not self.decoupled_weight_decay and decay_this:
        g = g + wd * p
      self.nu[k] = rho * self.nu[k] + (1 - rho) * np.abs(g) ** 2
      nu_hat = self.nu[k] / (1 - rho**t) if self.bias_correction else self.nu[k]
      s = nu_hat
      if self.centered:
        self.mu[k] = md * self.mu[k] + (1 - md) * g
        mu_hat = self.mu[k] / (1 - md**t) if self.bias_correction else self.mu[k]
        s = np.maximum(nu_hat - np.abs(mu_hat) ** 2, 0.0)
        if self.bias_correction and t == 1 and self.initial_scale == 0.0:
          # With zero initial moments, nu_hat = g^2 and mu_hat = g at t = 1, so
          # the variance estimate is exactly 0 (not rounding noise).
          s = np.zeros_like(s)
      denom = np.sqrt(s + self.eps) if self.eps_in_sqrt else np.sqrt(s) + self.eps
      with np.errstate(invalid='ignore', divide='ignore'):
        scaled = np.where(denom == 0, 0.0, g / np.where(denom == 0, 1.0, denom))
      if beta:
        if self.lr_in_momentum:
          self.buf[k] = beta * self.buf[k] + lr * scaled
          o = lr * scaled + beta * self.buf[k] if self.nesterov else self.buf[k]
        else:
          self.buf[k] = beta * self.buf[k] + scaled
          o = lr * (scaled + beta * self.buf[k]) if self.nesterov else lr * self.buf[k]
      else:
        o = lr * scaled
      if wd and self.decoupled_weight_decay and decay_this:
        o = o + lr * wd * p
      out[k] = -o
    self.count = t
    return out

  def step(self, params: Params, grads: Params, t: int) -> Params:
    """The params after one step (initialises the state at ``t = 0``), for :func:`trajectory`."""
    if t == 0:
      self.init(params)
    assert t == self.count, (t, self.count)
    updates = self.update(grads, params)
    return {k: params[k] + updates[k] for k in params}


def rms_outputs(
  grads: Sequence[Any],
  decay: Rate,
  eps: float,
  *,
  centered: bool = False,
  mean_decay: float | None = None,
  eps_in_sqrt: bool = True,
  initial_scale: float = 0.0,
  bias_correction: bool = False,
) -> list[np.ndarray]:
  """``scale_by_rms`` (``centered``: ``scale_by_centered_rms``) outputs for a gradient sequence.

  :class:`RmspropReference` at learning rate 1 with the sign removed (both
  exact in floating point): the tier-1 transforms are the alias without lr,
  momentum, weight decay or sign.
  """
  ref = RmspropReference(
    learning_rate=1.0,
    decay=decay,
    eps=eps,
    centered=centered,
    mean_decay=mean_decay,
    eps_in_sqrt=eps_in_sqrt,
    initial_scale=initial_scale,
    bias_correction=bias_correction,
  )
  zeros = to_f64({'g': np.zeros(np.shape(grads[0]), np.asarray(grads[0]).dtype)})
  ref.init(zeros)
  return [-ref.update(to_f64({'g': g}), zeros)['g'] for g in grads]


def worker_env() -> dict[str, str]:
  """This process's environment with the repository and ``tests/`` on ``PYTHONPATH``.

  For the subprocess workers, which import the package and the test helpers.
  """
  import os
  from pathlib import Path

  tests = Path(__file__).resolve().parent
  env = dict(os.environ)
  env['PYTHONPATH'] = os.pathsep.join(
    [str(tests.parent), str(tests)] + ([env['PYTHONPATH']] if env.get('PYTHONPATH') else [])
  )
  return env


def run_worker(script: Any, *args: str, timeout: float = 900) -> dict[str, Any]:
  """Runs ``python script *args`` on 8 virtual CPU devices; its ``RESULT {json}`` line.

  The worker gets the flags ``_eight_devices`` sets (so this process keeps one
  device) and the repository and ``tests/`` on its path. A non-zero exit is an
  ``AssertionError`` carrying the worker's traceback; a hung worker raises
  ``subprocess.TimeoutExpired`` after ``timeout`` seconds.
  """
  import json
  import subprocess
  import sys
  from pathlib import Path

  env = worker_env()
  env['XLA_FLAGS'] = (
    env.get('XLA_FLAGS', '') + ' --xla_force_host_platform_device_count=8'
  ).strip()
  env['JAX_PLATFORMS'] = 'cpu'
  proc = subprocess.run(
    [sys.executable, str(script), *args],
    env=env,
    capture_output=True,
    text=True,
    timeout=timeout,
  )
  if proc.returncode != 0:
    raise AssertionError(
      f'{Path(script).name} {" ".join(args)} failed in its 8-device subprocess '
      f'(exit {proc.returncode}):\n{proc.stderr[-6000:]}\n{proc.stdout[-2000:]}'
    )
  results = [
    json.loads(line[len('RESULT ') :])
    for line in proc.stdout.splitlines()
    if line.startswith('RESULT ')
  ]
  assert len(results) == 1, proc.stdout
  return results[0]
