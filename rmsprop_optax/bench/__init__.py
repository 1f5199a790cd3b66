"""``python -m rmsprop_optax bench``: the step against optax and PyTorch, timed and costed.

One job per module:

* :mod:`~rmsprop_optax.bench.configs`: the optimizer configurations and parameter trees timed;
* :mod:`~rmsprop_optax.bench.timing`: step time, interleaved with optax and an A/A control;
* :mod:`~rmsprop_optax.bench.bandwidth`: the memory-bandwidth probe (the step's floor);
* :mod:`~rmsprop_optax.bench.xla_cost`: peak memory, bytes and kernels of a compiled step;
* :mod:`~rmsprop_optax.bench.compile_time`: trace, lower and compile time against leaf count;
* :mod:`~rmsprop_optax.bench.quantized_state`: state bytes and the quantized step's parts;
* :mod:`~rmsprop_optax.bench.numerics`: the timed configurations step like optax;
* :mod:`~rmsprop_optax.bench.suite`: every measurement into one results dict (:func:`run`);
* :mod:`~rmsprop_optax.bench.report`: the results as text, with how to read them;
* :mod:`~rmsprop_optax.bench.cli`: the command line (what is measured: its ``--help``).
"""

from rmsprop_optax.bench.cli import main as main
from rmsprop_optax.bench.configs import CONFIGS as CONFIGS
from rmsprop_optax.bench.configs import QUANTIZED as QUANTIZED
from rmsprop_optax.bench.configs import TREES as TREES
from rmsprop_optax.bench.configs import state_label as state_label
from rmsprop_optax.bench.numerics import check_numerics as check_numerics
from rmsprop_optax.bench.quantized_state import state_bytes as state_bytes
from rmsprop_optax.bench.report import QUANTIZED_NOTE as QUANTIZED_NOTE
from rmsprop_optax.bench.report import format_table as format_table
from rmsprop_optax.bench.suite import run as run
from rmsprop_optax.bench.timing import torch_device as torch_device
