"""The benches' CPU accounting: a process's own CPU, and with `reaped` that of its children that
ended (Postgres backends end with their connections; their CPU moves to the postmaster)."""

import os
import subprocess
import sys

from tools.bench.harness import _cpu_seconds


def test_a_child_that_ended_is_counted_by_its_parent_only_when_reaped_is_asked() -> None:
    own, reaped = _cpu_seconds(os.getpid()), _cpu_seconds(os.getpid(), reaped=True)
    burn = "import time\nwhile time.process_time() < 0.5: pass"
    subprocess.run([sys.executable, "-c", burn], check=True)  # waited for: its CPU is ours as a child's
    assert _cpu_seconds(os.getpid(), reaped=True) - reaped >= 0.45
    assert _cpu_seconds(os.getpid()) - own < 0.45, "a process's own CPU does not include its children's"


def test_a_process_that_is_gone_counts_nothing() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert _cpu_seconds(child.pid) == 0.0 and _cpu_seconds(child.pid, reaped=True) == 0.0
