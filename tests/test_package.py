"""The package itself (condpt/__init__.py): its version, and what importing it does to other libraries' noise."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

import condpt


def test_version_matches_the_installed_metadata():
    assert condpt.__version__ == importlib.metadata.version("condpt")


def test_deepspeed_cpu_notice_is_not_printed_on_stdout():
    """DeepSpeed logs "Setting accelerator to CPU" to stdout on every CPU process that imports it; stdout is
    for results (`--dry-run` YAML, tables), so a single-process run must not start with that line."""
    out = subprocess.run([sys.executable, "-c", "import condpt, deepspeed"], capture_output=True, text=True,
                         timeout=300, check=True)
    assert "Setting accelerator" not in out.stdout
