"""pid_alive: this process lives; a child that has exited and been reaped does not."""

from __future__ import annotations

import os
import subprocess
import sys

from tokenizer_ext.procs import pid_alive


def test_pid_alive():
    assert pid_alive(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not pid_alive(child.pid)


def test_a_process_of_another_user_counts_as_alive():
    assert pid_alive(1)  # init: signal 0 to it is refused (PermissionError) unless root, which may signal it
