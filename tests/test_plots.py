"""The demo figures show what each demo claims: scales, titles, series, markers.

The toy demos are run in fast mode (seconds); the application demos' figures
are drawn from small hand-made result dicts with the same keys, so no
training runs here.
"""

from __future__ import annotations

import numpy as np
import pytest
from _harness import need

matplotlib = need('matplotlib')
matplotlib.use('Agg')

from rmsprop_optax.demos import plotting  # noqa: E402

PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


@pytest.fixture(autouse=True)
def _close_figures():
  import matplotlib.pyplot as plt

  yield
  plt.close('all')


def _title(fig) -> str:
  """Every title of a figure (suptitle and axes titles), joined."""
  parts = [fig._suptitle.get_text()] if fig._suptitle is not None else []
  return ' | '.join(parts + [ax.get_title() for ax in fig.axes])


def _lrs_in_title(fig, learning_rates) -> None:
  title = _title(fig)
  for name, lr in learning_rates.items():
    assert name in title, (name, title)
    assert plotting.fmt_lr(lr) in title, (lr, title)


def test_fmt_lr_and_versus():
  assert [plotting.fmt_lr(v) for v in (3e-3, 2.5e-4, 1e-3, 0.01, 0.3, 1.0)] == [
    '3e-3',
    '2.5e-4',
    '1e-3',
    '0.01',
    '0.3',
    '1',
  ]
  assert plotting.versus({'rmsprop': 3e-3, 'sgd': 0.3}) == 'rmsprop lr 3e-3 vs sgd lr 0.3'


def test_smooth_is_a_trailing_mean():
  np.testing.assert_allclose(plotting.smooth([0.0, 3.0, 6.0, 9.0], 3), [0.0, 1.5, 3.0, 6.0])


def test_quadratic_shows_y_flip_and_log_loss(tmp_path):
  from rmsprop_optax.demos import quadratic

  result = quadratic.run(fast=True)
  fig = plotting.demo_figure(result)
  ax_y, ax_loss = fig.axes
  # y(t): SGD's flip between -2 and +2, RMSprop's approach to 0.
  sgd_y = ax_y.get_lines()[0].get_ydata()
  assert ax_y.get_lines()[0].get_label() == 'sgd'
  np.testing.assert_allclose(np.abs(sgd_y[:10]), 2.0, rtol=1e-3)
  assert np.all(np.sign(sgd_y[1:10]) == -np.sign(sgd_y[:9]))
  assert 'y' in ax_y.get_ylabel()
  assert ax_loss.get_yscale() == 'log'
  assert {line.get_label() for line in ax_loss.get_lines()} == {'sgd', 'rmsprop'}
  assert ax_loss.get_xlabel() == 'step'
  assert 'sgd' in _title(fig) and 'rmsprop' in _title(fig) and '0.01' in _title(fig)
  # The y panel shows the first Y_STEPS steps and says so; the loss panel shows all of them
  # and shades the part the y panel covers.
  steps = quadratic.FAST_STEPS
  assert len(sgd_y) == quadratic.Y_STEPS + 1 < steps
  assert f'first {quadratic.Y_STEPS} of {steps} steps' in ax_y.get_title()
  assert f'all {steps} steps' in ax_loss.get_title()
  assert len(ax_loss.get_lines()[0].get_xdata()) == steps + 1
  (shade,) = ax_loss.patches
  np.testing.assert_allclose(shade.get_x() + shade.get_width(), quadratic.Y_STEPS)
  path = plotting.plot_result(result, tmp_path / 'quadratic.png')
  with open(path, 'rb') as f:
    assert f.read(8) == PNG_MAGIC


def test_rosenbrock_paths_on_contours_and_log_loss():
  from rmsprop_optax.demos import rosenbrock

  result = rosenbrock.run(fast=True)
  fig = plotting.demo_figure(result)
  names = list(rosenbrock.optimizers())
  *path_axes, ax_loss = fig.axes
  assert ax_loss.get_yscale() == 'log'
  assert len(ax_loss.get_lines()) == len(names)
  # The paths share the valley floor: drawn on one panel, the last hides the others. Each has
  # its own panel, so no path line is drawn over another's.
  assert len(path_axes) == len(names)
  for ax, name in zip(path_axes, names):
    assert ax.collections, 'no contour lines'
    labelled = [line for line in ax.get_lines() if not line.get_label().startswith('_')]
    assert [line.get_label() for line in labelled] == [name]
    np.testing.assert_allclose(labelled[0].get_xydata(), result['paths'][name])
    assert name in ax.get_title() and f'{result["curves"][name][-1]:.1e}' in ax.get_title()
  _lrs_in_title(fig, rosenbrock.LEARNING_RATES)


def test_adagrad_vs_rmsprop_log_axis_and_marked_switch():
  from rmsprop_optax.demos import adagrad_vs_rmsprop as demo

  result = demo.run()
  fig = plotting.demo_figure(result)
  (ax,) = fig.axes
  assert ax.get_yscale() == 'log'
  lines = ax.get_lines()
  curves = [line for line in lines if line.get_label() in result['curves']]
  assert len(curves) == 1 + len(demo.DECAYS)
  # The switch: a vertical line between step PHASE_STEPS and the next, labelled.
  switch = [line for line in lines if 'gradient' in str(line.get_label())]
  assert len(switch) == 1
  xdata = np.asarray(switch[0].get_xdata(), dtype=float)
  assert np.all(xdata == xdata[0]) and demo.PHASE_STEPS <= xdata[0] <= demo.PHASE_STEPS + 1
  # AdaGrad's line visibly collapsed: three decades below RMSprop (decay 0.9) at the end.
  adagrad = next(line for line in lines if line.get_label() == 'adagrad').get_ydata()
  rms = next(line for line in lines if line.get_label() == 'rmsprop (decay 0.9)').get_ydata()
  assert adagrad[-1] < 1e-2 * rms[-1]
  assert any('adagrad' in t.get_text() for t in ax.texts)
  assert 'adagrad' in _title(fig) and '0.01' in _title(fig)


def _digits_result(epochs: int = 4) -> dict:
  from rmsprop_optax.demos import digits

  lrs = dict(digits.LEARNING_RATES)
  rng = np.random.default_rng(0)
  return {
    'name': 'digits',
    'metrics': {name: {'test_accuracy': 0.95} for name in lrs}
    | {'chance (majority class)': {'test_accuracy': 0.1}},
    'curves': {name: list(np.geomspace(2.0, 0.05, epochs)) for name in lrs},
    'curve_label': 'training cross-entropy (mean per epoch)',
    'curve_xlabel': 'epoch',
    'curve_logy': True,
    'curve_x': list(range(1, epochs + 1)),
    'test_accuracy_curves': {name: list(rng.uniform(0.8, 0.99, epochs)) for name in lrs},
    'test_loss_curves': {name: list(np.geomspace(1.0, 0.1, epochs)) for name in lrs},
    'learning_rates': lrs,
    'test_size': 360,
  }


def test_digits_shows_test_accuracy_per_epoch():
  from rmsprop_optax.demos import digits

  result = _digits_result()
  fig = plotting.demo_figure(result)
  ax_acc, ax_loss = fig.axes
  assert 'accuracy' in ax_acc.get_ylabel()
  assert len(ax_acc.get_lines()) == 3
  assert ax_acc.get_xlabel() == 'epoch' and ax_loss.get_xlabel() == 'epoch'
  np.testing.assert_array_equal(ax_acc.get_lines()[0].get_xdata(), [1, 2, 3, 4])
  assert ax_loss.get_yscale() == 'log'
  _lrs_in_title(fig, digits.LEARNING_RATES)
  # The caption explains the loss spikes.
  assert 'spikes' in fig._supxlabel.get_text()


def test_digits_run_keeps_table_keys_and_adds_per_epoch_curves():
  """The result dict of a real run carries what the figure reads (cheap: 1 epoch)."""
  need('flax')
  need('sklearn')
  from rmsprop_optax.demos import digits

  data = digits.load_data()
  curves, metrics = digits._train(digits.optimizers()['rmsprop'], data, 1, 0, '', False)
  assert set(metrics) == {'test_accuracy', 'test_loss', 'final_train_loss'}
  assert curves['test_accuracy'] == [metrics['test_accuracy']]
  assert curves['test_loss'] == [metrics['test_loss']]


def test_dqn_shows_greedy_return_and_random_baseline():
  from rmsprop_optax.demos import dqn

  lrs = dict(dqn.LEARNING_RATES)
  points = 6
  result = {
    'name': 'dqn',
    'metrics': {name: {'greedy_mean_return': 100.0} for name in lrs},
    'curves': {name: list(np.linspace(20, 150, 50)) for name in lrs},
    'curve_label': 'training episode return (epsilon-greedy)',
    'curve_xlabel': 'transitions (x400)',
    'curve_x_label': 'transitions',
    'curve_x': [(i + 1) * 400.0 for i in range(50)],
    'curve_logy': False,
    'baselines': {'random policy': 22.0},
    'greedy_curves': {name: list(np.linspace(9, 160, points)) for name in lrs},
    'greedy_x': [i * 4000.0 for i in range(points)],
    'eval_episodes': 32,
    'learning_rates': lrs,
  }
  fig = plotting.demo_figure(result)
  ax = fig.axes[0]
  assert 'greedy' in ax.get_ylabel() and ax.get_xlabel() == 'transitions'
  baseline = [line for line in ax.get_lines() if line.get_label() == 'random policy']
  assert len(baseline) == 1 and set(baseline[0].get_ydata()) == {22.0}
  smoothed = [line for line in ax.get_lines() if line.get_label() in lrs]
  assert len(smoothed) == len(lrs)
  assert smoothed[0].get_xdata()[-1] == 20_000
  # The line is a trailing mean of 3 evaluations; the table's statistic (one evaluation of
  # the final policy) is drawn too, as a diamond at the last x, and the title says which is which.
  diamonds = [line for line in ax.get_lines() if line.get_marker() == 'D']
  assert [float(d.get_ydata()[0]) for d in diamonds] == [100.0] * len(lrs)
  assert all(float(d.get_xdata()[0]) == 20_000 for d in diamonds)
  assert 'mean of the last 3' in ax.get_title() and "diamond: the table's" in ax.get_title()
  assert fig.axes[1].get_xlabel() == 'transitions'
  _lrs_in_title(fig, lrs)


def test_char_lstm_plots_the_tables_validation_perplexity():
  from rmsprop_optax.demos import char_lstm

  lrs = char_lstm.LEARNING_RATES
  steps, points = 300, char_lstm.EVAL_POINTS
  val = {n: list(np.geomspace(90, 8 + i, points + 1)) for i, n in enumerate(lrs)}
  result = {
    'name': 'char_lstm',
    'metrics': {n: {'val_perplexity': val[n][-1]} for n in lrs},
    'curves': val,
    'curve_label': 'validation perplexity (held-out text, per character)',
    'curve_x': [i * steps / points for i in range(points + 1)],
    'curve_x_label': 'step',
    'curve_logy': True,
    'baselines': {'unigram': 30.0},
    'train_curves': {n: list(np.geomspace(80, 5, 50)) for n in lrs},
    'train_curve_x': [(i + 0.5) * steps / 50 for i in range(50)],
    'title': 'char LSTM: ' + plotting.versus(lrs),
  }
  fig = plotting.demo_figure(result)
  ax_val, ax_train = fig.axes
  assert 'validation' in ax_val.get_ylabel() and 'validation' in ax_val.get_title()
  assert 'training' in ax_train.get_ylabel()
  for name in lrs:
    (line,) = [line for line in ax_val.get_lines() if line.get_label() == name]
    # The last point of each validation line is the table's value, at the last step.
    assert line.get_xdata()[-1] == steps and line.get_ydata()[-1] == val[name][-1]
  _lrs_in_title(fig, lrs)


def test_matrix_factorization_title_names_data_and_model_rank():
  from rmsprop_optax.demos import matrix_factorization as mf

  # The ratings are rank 5 (the module docstring's R = 3 + U V^T, U and V of rank RANK); the
  # model has FACTORS = 10 factors. The title must not give the model's rank as the data's.
  assert (mf.RANK, mf.FACTORS) == (5, 10)
  assert '(600x400, data rank 5, model rank 10)' in mf.title()


@pytest.mark.parametrize('name', ['matrix_factorization'])
def test_generic_figures_use_real_steps_and_learning_rates(name):
  import importlib

  module = importlib.import_module(f'rmsprop_optax.demos.{name}')
  lrs = getattr(module, 'LEARNING_RATES', None) or module.PEAK_LEARNING_RATES
  steps = 300
  result = {
    'name': name,
    'metrics': {n: {'x': 1.0} for n in lrs},
    'curves': {n: list(np.geomspace(30, 10, 50)) for n in lrs},
    'curve_label': 'loss',
    'curve_xlabel': 'step (x6)',
    'curve_x': [(i + 0.5) * steps / 50 for i in range(50)],
    'curve_x_label': 'step',
    'curve_logy': True,
    'baselines': {'baseline': 20.0},
    'title': f'{name}: ' + plotting.versus(lrs),
  }
  fig = plotting.demo_figure(result)
  (ax,) = fig.axes
  assert ax.get_xlabel() == 'step'
  assert ax.get_yscale() == 'log'
  assert len(ax.get_lines()) == len(lrs) + 1
  assert ax.get_lines()[0].get_xdata()[-1] == pytest.approx(297.0)
  _lrs_in_title(fig, lrs)


def test_sweep_perplexity_axis_has_plain_tick_labels():
  # A hand-made sweep result: the LSTM panel spans 20..100 on a log axis, less than a decade,
  # where matplotlib's default labels read 2x10^1 .. 6x10^1.
  from rmsprop_optax.demos import lr_sensitivity

  lrs = [1e-3, 1e-2, 1e-1, 1.0]
  band = {'best_lr': 0.1, 'best_value': 22.5, 'low': 0.05, 'high': 0.2, 'decades': 0.6}
  summary = {'mean': [60.0, 30.0, 22.5, 40.0], 'min': [58.0, 29.0, 22.0, 38.0]}
  summary |= {'max': [62.0, 31.0, 23.0, 42.0], 'band': band | {'at_edge': False}}
  acc = {'mean': [0.5, 0.8, 0.9, 0.7], 'min': [0.5, 0.8, 0.9, 0.7], 'max': [0.5, 0.8, 0.9, 0.7]}
  acc |= {'band': band | {'best_value': 0.9, 'at_edge': False}}
  result = {
    'name': 'sweep',
    'learning_rates': lrs,
    'seeds': [0, 1],
    'sweeps': {'digits': {'rmsprop': acc}, 'lstm': {'rmsprop': summary, 'sgd': summary}},
  }
  fig = lr_sensitivity.figure(result)
  fig.canvas.draw()
  ax = fig.axes[1]
  assert ax.get_yscale() == 'log'
  labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
  assert labels and all(text == f'{float(text):g}' for text in labels), labels
  assert {'30', '50', '100'} <= set(labels), labels
  assert not [t.get_text() for t in ax.get_yticklabels(minor=True) if t.get_text()]


def test_curves_on_a_short_log_range_have_plain_tick_labels():
  # 5.5 .. 33 spans less than a decade: matplotlib alone would label 6x10^0 .. 3x10^1.
  import matplotlib.pyplot as plt

  result = {'curves': {'rmsprop': list(np.geomspace(33.0, 5.5, 50))}, 'curve_logy': True}
  fig, ax = plt.subplots()
  plotting.draw_curves(result, ax)
  fig.canvas.draw()
  labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
  assert labels and all(text == f'{float(text):g}' for text in labels), labels
  assert {'10', '20', '30'} <= set(labels), labels
  assert not [t.get_text() for t in ax.get_yticklabels(minor=True) if t.get_text()]
  plt.close(fig)
