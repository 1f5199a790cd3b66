"""Command line: ``python -m rmsprop_optax {demo,bench,parity} ...``."""

from __future__ import annotations

import argparse
import importlib
import sys

# Each subcommand lives in its own module with a ``main(argv) -> int``; they are
# imported lazily so ``--help`` does not pay for JAX, PyTorch or Flax.
_COMMANDS = {
  'demo': ('rmsprop_optax.demos.cli', 'run the toy problems and applications, plot the curves'),
  'bench': ('rmsprop_optax.bench', 'time the step against optax and PyTorch'),
  'parity': ('rmsprop_optax.parity', 'check the presets against the real frameworks'),
}


def main(argv: list[str] | None = None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  parser = argparse.ArgumentParser(
    prog='python -m rmsprop_optax',
    description='rmsprop_optax: RMSprop for Optax.',
  )
  parser.add_argument(
    'command',
    choices=sorted(_COMMANDS),
    help='; '.join(f'{k}: {v[1]}' for k, v in _COMMANDS.items()),
  )
  parser.add_argument(
    'args', nargs=argparse.REMAINDER, help='arguments of the command (see COMMAND --help)'
  )
  ns = parser.parse_args(argv[:1])
  module = importlib.import_module(_COMMANDS[ns.command][0])
  return int(module.main(argv[1:]) or 0)


if __name__ == '__main__':
  sys.exit(main())
