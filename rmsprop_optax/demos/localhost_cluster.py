"""A localhost cluster: N Python processes of one multi-process JAX job on this machine, on CPU.

For trying and testing multi-process code on one machine (the multi-host demo
and its tests use it): :func:`launch` starts the processes with one coordinator
address on 127.0.0.1, several virtual CPU devices each (CPU collectives go over
gloo), streams their output and kills the whole group when one fails, hangs or
runs past its timeout.
"""

from __future__ import annotations

import os
import queue
import random
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


def free_port() -> int:
  """A TCP port on 127.0.0.1 for the coordinator, below the kernel's ephemeral range.

  Gloo's connections (and every other outgoing connection) take ephemeral
  ports, so one of them cannot grab the coordinator's port between this check
  and the coordinator's bind, as it could grab a port the kernel handed out.
  """
  low = 32768
  try:
    with open('/proc/sys/net/ipv4/ip_local_port_range') as f:
      low = int(f.read().split()[0])
  except (OSError, ValueError, IndexError):
    pass
  rng = random.Random()
  for _ in range(200 if low > 10000 else 0):
    port = rng.randrange(10000, low)
    with socket.socket() as s:
      try:
        s.bind(('127.0.0.1', port))
      except OSError:
        continue
      return port
  with socket.socket() as s:  # everything below the range is taken: any free port
    s.bind(('127.0.0.1', 0))
    return int(s.getsockname()[1])


@dataclass
class Finished:
  """One launched process: its exit status (negative: killed by that signal) and output."""

  process_id: int
  returncode: int
  lines: list[str] = field(default_factory=list)

  @property
  def output(self) -> str:
    """Its output, one string."""
    return '\n'.join(self.lines)


def gloo_notice(line: str) -> bool:
  """Gloo's connection notices, one per collective group: noise in a process's output."""
  return line.startswith('[Gloo]')


def outputs(finished: Sequence[Finished], last: int = 60) -> str:
  """The last ``last`` lines of each process (gloo's connection notices left out)."""
  return '\n'.join(
    f'--- process {f.process_id} (exit {f.returncode}) ---\n'
    + '\n'.join([ln for ln in f.lines if not gloo_notice(ln)][-last:])
    for f in finished
  )


class LaunchError(RuntimeError):
  """A launched process failed, or the group ran past its timeout (``timed_out``).

  Carries every process's output (``finished``).
  """

  def __init__(self, message: str, finished: list[Finished], *, timed_out: bool = False):
    super().__init__(f'{message}\n{outputs(finished)}')
    self.message = message
    self.finished = finished
    self.timed_out = timed_out


def launch(
  command: Sequence[str],
  num_processes: int,
  *,
  devices_per_process: int = 4,
  timeout: float = 300.0,
  env: dict[str, str] | None = None,
  echo: Callable[[int, str], None] | None = None,
  on_line: Callable[[int, str, list[subprocess.Popen[str]]], None] | None = None,
  check: bool = True,
) -> list[Finished]:
  """Runs ``command + ['--coordinator', ..., '--num-processes', N, '--process-id', i]`` N times.

  A localhost cluster on CPU, for trying and testing multi-process code on one
  machine: every process gets ``devices_per_process`` virtual CPU devices
  (``JAX_PLATFORMS=cpu``, ``JAX_NUM_CPU_DEVICES``) and one coordinator address
  on 127.0.0.1. Output lines arrive as they are printed (``echo(i, line)``;
  ``on_line(i, line, processes)`` may act on them, e.g. kill a process). When
  one process exits with an error, the others are killed (a peer waiting in a
  collective for a dead process would otherwise wait for ever), and so is the
  whole group when ``timeout`` seconds pass or the launcher is interrupted.
  ``check=True`` raises :class:`LaunchError` then; ``check=False`` returns
  what happened.
  """
  if num_processes < 1:
    raise ValueError(f'launch: `num_processes` must be >= 1, got {num_processes}')
  address = f'127.0.0.1:{free_port()}'
  child_env = dict(os.environ if env is None else env)
  child_env['JAX_PLATFORMS'] = 'cpu'
  child_env['JAX_NUM_CPU_DEVICES'] = str(devices_per_process)
  child_env.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
  child_env['PYTHONUNBUFFERED'] = '1'
  # The XLA flag would override JAX_NUM_CPU_DEVICES in the children.
  flags = [f for f in child_env.get('XLA_FLAGS', '').split() if 'device_count' not in f]
  child_env['XLA_FLAGS'] = ' '.join(flags)
  lines: queue.Queue[tuple[int, str | None]] = queue.Queue()

  def pump(i: int, stream: Any) -> None:
    for line in stream:
      lines.put((i, line.rstrip('\n')))
    lines.put((i, None))

  processes: list[subprocess.Popen[str]] = []
  pumps: list[threading.Thread] = []
  finished = [Finished(i, 0) for i in range(num_processes)]
  failure = ''
  timed_out = False
  try:
    for i in range(num_processes):
      args = ['--coordinator', address, '--num-processes', str(num_processes)]
      processes.append(
        subprocess.Popen(
          [*command, *args, '--process-id', str(i)],
          env=child_env,
          stdout=subprocess.PIPE,
          stderr=subprocess.STDOUT,
          text=True,
          start_new_session=True,  # its own process group: killing it kills its children
        )
      )
      pumps.append(threading.Thread(target=pump, args=(i, processes[-1].stdout), daemon=True))
      pumps[-1].start()
    open_streams = num_processes
    deadline = time.monotonic() + timeout
    while open_streams:
      try:
        i, line = lines.get(timeout=0.1)
      except queue.Empty:
        i, line = -1, None
      if i >= 0:
        if line is None:
          open_streams -= 1
        else:
          finished[i].lines.append(line)
          if echo is not None:
            echo(i, line)
          if on_line is not None:
            on_line(i, line, processes)
      if not failure:
        failed = [j for j, p in enumerate(processes) if p.poll() not in (None, 0)]
        if failed:
          failure = f'process {failed[0]} exited with status {processes[failed[0]].returncode}'
          _kill_all(processes, grace=5.0)
      if time.monotonic() > deadline:
        failure = failure or f'the processes ran past the {timeout:.0f} s timeout'
        timed_out = True
        break
  except BaseException:  # Ctrl-C, a failed start, an error in a callback: no survivors
    failure = failure or 'interrupted'
    raise
  finally:
    _kill_all(processes, grace=0.0 if failure else 30.0)
    for t, p in zip(pumps, processes):
      t.join(timeout=5.0)
      if p.stdout is not None:
        p.stdout.close()
  for i, p in enumerate(processes):
    finished[i].returncode = p.returncode
  while not lines.empty():  # what was printed after the loop stopped reading
    i, line = lines.get()
    if line is not None:
      finished[i].lines.append(line)
  if check and (failure or any(f.returncode for f in finished)):
    raise LaunchError(f'launch: {failure or "a process failed"}', finished, timed_out=timed_out)
  return finished


def _kill_all(processes: list[subprocess.Popen[str]], grace: float) -> None:
  """Waits up to ``grace`` seconds for each process, then SIGKILLs its group."""
  end = time.monotonic() + grace
  for p in processes:
    if p.poll() is None:
      try:
        p.wait(timeout=max(0.0, end - time.monotonic()))
      except subprocess.TimeoutExpired:
        pass
    if p.poll() is None:
      try:
        os.killpg(p.pid, signal.SIGKILL)
      except ProcessLookupError:
        pass
      p.wait()
