"""Command line: ``python -m rmsprop_optax {demo,bench,parity} ...``."""

from __future__ import annotations

import argparse
import importlib
import sys

from rmsprop_optax import __version__

# Each subcommand lives in its own module with a ``main(argv) -> int``, imported
# only when that subcommand runs, so its heavy dependencies (PyTorch, Flax,
# gymnax, matplotlib) are not loaded by ``--help``, ``--version`` or the other
# subcommands. Importing the package itself (which ``python -m`` does before
# this module runs) imports JAX and optax.
_COMMANDS = {
  'demo': ('rmsprop_optax.demos.cli', 'run the toy problems and applications, plot the curves'),
  'bench': ('rmsprop_optax.bench.cli', 'time the step against optax and PyTorch'),
  'parity': ('rmsprop_optax.parity', 'check the presets against the real frameworks'),
}


def _parser() -> argparse.ArgumentParser:
  width = max(len(name) for name in _COMMANDS)
  commands = '\n'.join(f'  {name.ljust(width)}  {help_}' for name, (_, help_) in _COMMANDS.items())
  parser = argparse.ArgumentParser(
    prog='python -m rmsprop_optax',
    description='rmsprop_optax: RMSprop for Optax.',
    epilog=f'commands:\n{commands}\n\nOptions of a command: python -m rmsprop_optax COMMAND --help',
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  parser.add_argument('--version', action='version', version=f'rmsprop_optax {__version__}')
  parser.add_argument(
    'command',
    nargs='?',
    choices=list(_COMMANDS),
    metavar='COMMAND',
    help='one of the commands below',
  )
  parser.add_argument(
    'args', nargs=argparse.REMAINDER, help='arguments of the command (see COMMAND --help)'
  )
  return parser


def main(argv: list[str] | None = None) -> int:
  """Dispatches to the subcommand; with no arguments, prints the help and returns 0."""
  argv = sys.argv[1:] if argv is None else list(argv)
  parser = _parser()
  # Only the first word is ours: everything after the command is the command's.
  ns = parser.parse_args(argv[:1])
  if ns.command is None:
    parser.print_help()
    return 0
  module = importlib.import_module(_COMMANDS[ns.command][0])
  return int(module.main(argv[1:]) or 0)


if __name__ == '__main__':
  sys.exit(main())
