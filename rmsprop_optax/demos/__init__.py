"""Demos: the classic RMSprop experiments and the applications it is known for.

Toy problems: the ill-conditioned bowl ``x^2 + 100 y^2`` from (5, -2),
Rosenbrock's valley, AdaGrad vs RMSprop on a gradient that drops 100-fold.
Applications: image classification (a CNN), language modelling (an LSTM),
deep reinforcement learning (DQN) and recommendation (matrix factorisation),
on data that ships with Python or its packages, so everything runs offline.

Every demo module has ``run(*, fast=False, seed=0, progress=False) -> dict``
returning ``{'name', 'metrics': {optimizer: {metric: value}}, 'curves':
{optimizer: [float, ...]}, 'curve_label'}``; ``python -m rmsprop_optax demo``
runs them, prints the metrics and plots the curves. The demos with a random
seed also take ``num_seeds`` (``--seeds``): their metrics are then seed means,
with the per-seed values in ``seed_metrics``, and the table shows mean
(min–max). The toy problems are deterministic and have no seed.
"""
