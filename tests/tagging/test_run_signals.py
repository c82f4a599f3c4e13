"""`condpt tag` stopped by a signal other than SIGKILL. SIGTERM (`kill`, `timeout`, a scheduler) killed the main
process at once: its workers went on, printed BrokenPipeError tracebacks after the shell prompt had returned, and
report.json said only `complete: false`. Ctrl-C while the forkserver was still importing printed its
KeyboardInterrupt traceback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CLI = "import sys; from condpt.cli import main; sys.argv[0] = 'condpt'; sys.exit(main())"


def _running(p) -> bool:
    import psutil

    try:  # orphans are reaped by init, which in a container may never do it: a zombie is dead
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_stops_the_run_its_workers_first_and_the_report_says_why(tmp_path, workers):
    import psutil

    src = tmp_path / "c.jsonl"
    src.write_text("".join(json.dumps({"text": f"Document {i}: the robot lies to its makers over tea."}) + "\n"
                           for i in range(40_000)))
    (tmp_path / "tag.yaml").write_text("rows_per_shard: 200\nclassifier:\n  spec: none\n")
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", CLI, "tag", str(src), "--out", str(out), "--config",
                             str(tmp_path / "tag.yaml"), "--quiet", "--workers", str(workers)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    main = psutil.Process(proc.pid)
    deadline, children = time.time() + 180, []
    while time.time() < deadline and proc.poll() is None:
        children = main.children(recursive=True)
        if len(list((out / "markers").glob("*.json"))) >= 2 and len(children) >= (workers if workers > 1 else 0):
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read().decode()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    err = err.decode()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "stopped by SIGTERM" in err and "Traceback" not in err, err
    report = json.loads((out / "report.json").read_text())
    assert not report["complete"] and report["error"] == "stopped by SIGTERM"
    assert [p.pid for p in children if _running(p)] == []  # gone when the main process is


def test_the_forkserver_ignores_ctrl_c_from_its_start():
    """Ctrl-C reaches the whole process group: the main process stops the run and terminates the pool; the
    forkserver must not print a KeyboardInterrupt traceback from the imports it preloads (it set SIGINT to
    ignored only after them), nor its workers from theirs."""
    script = (
        "import signal\n"
        "from multiprocess import forkserver\n"
        "from condpt.tagging.pool import start_forkserver\n"
        "start_forkserver(1)\n"
        "pid = forkserver._forkserver._forkserver_pid\n"
        "ign = int(open(f'/proc/{pid}/status').read().split('SigIgn:')[1].split()[0], 16)\n"
        "print(bool(ign & (1 << (signal.SIGINT - 1))), signal.getsignal(signal.SIGINT) is signal.default_int_handler)\n")
    res = subprocess.run([sys.executable, "-c", script], check=False, env={**os.environ, "PYTHONPATH": str(REPO)},
                         capture_output=True, text=True, timeout=300)
    assert res.stdout.split() == ["True", "True"], res.stderr  # the server ignores it; this process still stops


def test_a_stop_left_uncaught_exits_as_the_signal_would():
    """`tag_corpus` called from a program of one's own (`condpt experiment`): Stopped is a SystemExit whose code is
    what a shell shows for a process SIGTERM killed, and no traceback is printed."""
    script = "import signal\nfrom condpt.tagging.run import Stopped\nraise Stopped(signal.SIGTERM)"
    res = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert res.returncode == 128 + signal.SIGTERM and res.stderr == ""


def test_ctrl_c_is_named_in_the_report(tmp_path, monkeypatch):
    """report.json said `error: "KeyboardInterrupt: "` (the exception has no message)."""
    from condpt.tagging import chunked
    from condpt.tagging.cascade import TagConfig
    from condpt.tagging.run import tag_corpus

    def interrupted(self, *a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(chunked.ChunkWriter, "finish", interrupted)
    src = tmp_path / "c.jsonl"
    src.write_text('{"text": "Tea."}\n')
    with pytest.raises(KeyboardInterrupt):
        tag_corpus([src], tmp_path / "out", TagConfig(classifier={"spec": "none"}), progress=False)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert not report["complete"] and report["error"] == "interrupted (Ctrl-C)"
