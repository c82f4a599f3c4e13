"""Whether a process lives, for code that outlives or watches another (stale temporary directories here; in
condpt, pool workers that watch their main process). In tokenizer_ext because condpt depends on it, not the
reverse."""

from __future__ import annotations

import os


def pid_alive(pid: int) -> bool:
    """True while a process with id `pid` exists on this host (signal 0 checks without sending anything)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True
