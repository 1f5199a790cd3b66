"""The localhost cluster launcher: a failed, hung or interrupted job leaves no process behind.

The multi-process tests (``test_multihost.py``) run real jobs through it; these
check the launcher alone, with processes that fail, hang or are never started.
"""

from __future__ import annotations

import io
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rmsprop_optax.demos import localhost_cluster


def test_a_failed_process_stops_its_peers():
  start = time.monotonic()
  code = 'import sys, time; sys.exit(3) if sys.argv[-1] == "0" else time.sleep(120)'
  with pytest.raises(localhost_cluster.LaunchError, match='process 0 exited with status 3') as info:
    localhost_cluster.launch([sys.executable, '-c', code], 2, devices_per_process=1, timeout=100)
  assert time.monotonic() - start < 30
  assert not info.value.timed_out


def test_a_hung_process_is_killed_at_the_timeout():
  start = time.monotonic()
  code = 'import time; time.sleep(120)'
  with pytest.raises(localhost_cluster.LaunchError, match='past the 3 s timeout') as info:
    localhost_cluster.launch([sys.executable, '-c', code], 2, devices_per_process=1, timeout=3)
  assert time.monotonic() - start < 30
  assert all(f.returncode == -signal.SIGKILL for f in info.value.finished)
  assert info.value.timed_out


def test_an_error_in_the_launcher_leaves_no_process_behind():
  seen: list[subprocess.Popen[str]] = []

  def fail(i: int, line: str, processes: list[subprocess.Popen[str]]) -> None:
    seen[:] = processes
    raise RuntimeError('the callback failed')

  code = 'import time; print("up", flush=True); time.sleep(120)'
  with pytest.raises(RuntimeError, match='the callback failed'):
    localhost_cluster.launch([sys.executable, '-c', code], 2, devices_per_process=1, on_line=fail)
  assert len(seen) == 2
  assert all(p.returncode == -signal.SIGKILL for p in seen)


def test_free_port_is_below_the_ephemeral_range():
  low = int(Path('/proc/sys/net/ipv4/ip_local_port_range').read_text().split()[0])
  assert all(10000 <= localhost_cluster.free_port() < low for _ in range(20))


def test_free_port_when_the_ephemeral_range_starts_low(monkeypatch):
  # Nothing lies between 10000 and the range's start: any free port, from the kernel.
  monkeypatch.setattr(
    localhost_cluster, 'open', lambda *a, **k: io.StringIO('5000 60999\n'), raising=False
  )
  port = localhost_cluster.free_port()
  assert 1 <= port < 65536 and port != 10000


def test_launch_rejects_no_processes():
  with pytest.raises(ValueError, match='num_processes'):
    localhost_cluster.launch([sys.executable, '-c', 'pass'], 0)
