"""Float64 NumPy references for frameworks that cannot be installed here.

Each class follows its framework's update in that framework's own arithmetic
order, from the source file its docstring cites. Independent of the package: it
imports nothing from ``rmsprop_optax``. Every ``step(params, grads, t)`` takes
the 0-based step index ``t`` (learning-rate callables are read at ``t``, the
count before the increment, as the frameworks' schedules are) and returns the
new parameters; the state lives on the object. ``_harness.trajectory`` runs them.
"""

from __future__ import annotations

import numpy as np
from _harness import Params, Rate
from _harness import to_f64 as _f64


def _rate(lr: Rate, t: int) -> float:
  return float(lr(t)) if callable(lr) else float(lr)


class TF1:
  """TF1 ``RMSPropOptimizer``: the ``ApplyRMSProp`` / ``ApplyCenteredRMSProp`` kernels.

  tensorflow/core/kernels/training_ops.cc; slots from
  tensorflow/python/training/rmsprop.py (``rms`` initialised to ones, ``mg`` and
  ``momentum`` to zeros)::

    ms  += (grad^2 - ms) * (1 - rho)
    mg  += (grad - mg) * (1 - rho)                          (centered)
    mom  = mom * momentum + (grad * lr) / sqrt(ms + eps)    (centered: ms - mg^2 + eps)
    var -= mom
  """

  def __init__(
    self,
    learning_rate: Rate,
    decay: float = 0.9,
    momentum: float = 0.0,
    epsilon: float = 1e-10,
    centered: bool = False,
  ) -> None:
    self.lr, self.rho, self.momentum, self.eps, self.centered = (
      learning_rate,
      decay,
      momentum,
      epsilon,
      centered,
    )
    self.ms: Params = {}
    self.mg: Params = {}
    self.mom: Params = {}

  def step(self, params: Params, grads: Params, t: int) -> Params:
    params, grads = _f64(params), _f64(grads)
    if not self.ms:
      self.ms = {k: np.ones_like(p) for k, p in params.items()}
      self.mg = {k: np.zeros_like(p) for k, p in params.items()}
      self.mom = {k: np.zeros_like(p) for k, p in params.items()}
    lr = _rate(self.lr, t)
    out = {}
    for k, var in params.items():
      g = grads[k]
      self.ms[k] = self.ms[k] + (np.square(g) - self.ms[k]) * (1 - self.rho)
      if self.centered:
        self.mg[k] = self.mg[k] + (g - self.mg[k]) * (1 - self.rho)
        denom = (self.ms[k] - np.square(self.mg[k])) + self.eps
      else:
        denom = self.ms[k] + self.eps
      self.mom[k] = self.mom[k] * self.momentum + (g * lr) / np.sqrt(denom)
      out[k] = var - self.mom[k]
    return out


class TimmRMSpropTF:
  """timm's ``RMSpropTF`` (timm/optim/rmsprop_tf.py), ``caution=False``.

  ::

    decoupled: p *= 1 - lr * wd            else: grad = grad + wd * p
    square_avg += (grad^2 - square_avg) * (1 - alpha)          (starts at ones)
    grad_avg   += (grad - grad_avg) * (1 - alpha)              (centered)
    avg = sqrt(square_avg + eps)   (centered: sqrt(square_avg - grad_avg^2 + eps))
    momentum > 0, lr_in_momentum:     buf = momentum buf + lr grad / avg;  p -= buf
    momentum > 0, not lr_in_momentum: buf = momentum buf + grad / avg;     p -= lr buf
    momentum == 0:                    p -= lr grad / avg
  """

  def __init__(
    self,
    lr: Rate = 1e-2,
    alpha: float = 0.9,
    eps: float = 1e-10,
    weight_decay: float = 0.0,
    momentum: float = 0.0,
    centered: bool = False,
    decoupled_decay: bool = False,
    lr_in_momentum: bool = True,
  ) -> None:
    self.lr, self.alpha, self.eps, self.wd = lr, alpha, eps, weight_decay
    self.momentum, self.centered = momentum, centered
    self.decoupled, self.lr_in_momentum = decoupled_decay, lr_in_momentum
    self.square_avg: Params = {}
    self.grad_avg: Params = {}
    self.buf: Params = {}

  def step(self, params: Params, grads: Params, t: int) -> Params:
    params, grads = _f64(params), _f64(grads)
    if not self.square_avg:
      self.square_avg = {k: np.ones_like(p) for k, p in params.items()}
      self.grad_avg = {k: np.zeros_like(p) for k, p in params.items()}
      self.buf = {k: np.zeros_like(p) for k, p in params.items()}
    lr = _rate(self.lr, t)
    one_minus_alpha = 1.0 - self.alpha
    out = {}
    for k, p in params.items():
      g = grads[k]
      if self.wd != 0:
        if self.decoupled:
          p = p * (1.0 - lr * self.wd)
        else:
          g = g + self.wd * p
      self.square_avg[k] = self.square_avg[k] + (g**2 - self.square_avg[k]) * one_minus_alpha
      if self.centered:
        self.grad_avg[k] = self.grad_avg[k] + (g - self.grad_avg[k]) * one_minus_alpha
        avg = np.sqrt(self.square_avg[k] - self.grad_avg[k] * self.grad_avg[k] + self.eps)
      else:
        avg = np.sqrt(self.square_avg[k] + self.eps)
      if self.momentum > 0:
        if self.lr_in_momentum:
          self.buf[k] = self.buf[k] * self.momentum + lr * (g / avg)
          p = p - self.buf[k]
        else:
          self.buf[k] = self.buf[k] * self.momentum + g / avg
          p = p - lr * self.buf[k]
      else:
        p = p - lr * (g / avg)
      out[k] = p
    return out


class Graves2013:
  """Graves (2013) eq. 38-41, in Chainer ``RMSpropGraves``'s order.

  ::

    n     = alpha n + (1 - alpha) g^2
    gbar  = alpha gbar + (1 - alpha) g
    delta = momentum delta - lr g / sqrt(n - gbar^2 + eps)
    w    += delta
  """

  def __init__(
    self,
    learning_rate: Rate = 1e-4,
    decay: float = 0.95,
    momentum: float = 0.9,
    eps: float = 1e-4,
  ) -> None:
    self.lr, self.alpha, self.momentum, self.eps = learning_rate, decay, momentum, eps
    self.n: Params = {}
    self.gbar: Params = {}
    self.delta: Params = {}

  def step(self, params: Params, grads: Params, t: int) -> Params:
    params, grads = _f64(params), _f64(grads)
    if not self.n:
      self.n = {k: np.zeros_like(p) for k, p in params.items()}
      self.gbar = {k: np.zeros_like(p) for k, p in params.items()}
      self.delta = {k: np.zeros_like(p) for k, p in params.items()}
    lr = _rate(self.lr, t)
    out = {}
    for k, w in params.items():
      g = grads[k]
      self.n[k] = self.n[k] * self.alpha + (1 - self.alpha) * g * g
      self.gbar[k] = self.gbar[k] * self.alpha + (1 - self.alpha) * g
      self.delta[k] = self.delta[k] * self.momentum - lr * g / np.sqrt(
        self.n[k] - self.gbar[k] * self.gbar[k] + self.eps
      )
      out[k] = w + self.delta[k]
    return out


class DQNLua:
  """DQN's hand-written RMSprop (deepmind/dqn, NeuralQLearner.lua, ``qLearnMinibatch``).

  ``dw`` is the *negative* loss gradient (the code backpropagates the TD error
  ``target - q``), the constants are literal (0.95, 0.05, 0.01)::

    g   = g:mul(0.95):add(0.05, dw)
    g2  = g2:mul(0.95):add(0.05, dw .* dw)
    tmp = sqrt(g2 - g .* g + 0.01)
    w   = w + lr * dw ./ tmp
  """

  def __init__(self, learning_rate: Rate = 2.5e-4, decay: float = 0.95, eps: float = 0.01) -> None:
    self.lr, self.decay, self.eps = learning_rate, decay, eps
    self.g: Params = {}
    self.g2: Params = {}

  def step(self, params: Params, grads: Params, t: int) -> Params:
    params, grads = _f64(params), _f64(grads)
    if not self.g:
      self.g = {k: np.zeros_like(p) for k, p in params.items()}
      self.g2 = {k: np.zeros_like(p) for k, p in params.items()}
    lr = _rate(self.lr, t)
    out = {}
    for k, w in params.items():
      dw = -grads[k]
      self.g[k] = self.g[k] * self.decay + (1 - self.decay) * dw
      self.g2[k] = self.g2[k] * self.decay + (1 - self.decay) * (dw * dw)
      tmp = np.sqrt(self.g2[k] - self.g[k] * self.g[k] + self.eps)
      out[k] = w + lr * dw / tmp
    return out


class Lasagne:
  """Lasagne's ``lasagne.updates.rmsprop`` (lasagne/updates.py).

  ::

    accu_new = rho * accu + (1 - rho) * grad ** 2
    param    = param - learning_rate * grad / sqrt(accu_new + epsilon)
  """

  def __init__(self, learning_rate: Rate = 1.0, rho: float = 0.9, epsilon: float = 1e-6) -> None:
    self.lr, self.rho, self.eps = learning_rate, rho, epsilon
    self.accu: Params = {}

  def step(self, params: Params, grads: Params, t: int) -> Params:
    params, grads = _f64(params), _f64(grads)
    if not self.accu:
      self.accu = {k: np.zeros_like(p) for k, p in params.items()}
    lr = _rate(self.lr, t)
    out = {}
    for k, p in params.items():
      g = grads[k]
      self.accu[k] = self.rho * self.accu[k] + (1 - self.rho) * g**2
      out[k] = p - (lr * g / np.sqrt(self.accu[k] + self.eps))
    return out
