"""The local pool's forkserver (condpt.tagging.pool): started early, preloaded, with the workers' thread cap."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from rerun import write_lines
from typer.testing import CliRunner

import condpt.cli.tag  # noqa: F401  (registers `tag`)
from condpt.cli import app
from condpt.tagging import pool
from condpt.tagging import run as run_mod

REPO = Path(__file__).resolve().parents[2]

_PROBE = '''
import json, os, sys
import multiprocess as mp
from condpt.tagging.pool import start_forkserver

def probe(_):
    return {"threads": os.environ.get("OMP_NUM_THREADS"),
            "imported": sorted(m for m in ("pandas", "condpt.tagging.run") if m in sys.modules)}

if __name__ == "__main__":
    start_forkserver(3, {"condpt.tagging.cascade"})
    with mp.get_context("forkserver").Pool(1) as p:
        seen = p.map(probe, [0])[0]
    print(json.dumps({**seen, "main_threads": os.environ.get("OMP_NUM_THREADS")}))
'''


def test_workers_fork_with_the_pipeline_imported_and_their_thread_cap(tmp_path):
    script = tmp_path / "probe.py"
    script.write_text(_PROBE)
    env = {k: v for k, v in os.environ.items() if k not in pool.THREAD_VARS}
    res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=False, timeout=300,
                         env={**env, "PYTHONPATH": str(REPO)})
    assert res.returncode == 0, res.stderr[-3000:]
    seen = json.loads(res.stdout.splitlines()[-1])
    assert seen == {"threads": "3", "imported": ["condpt.tagging.run", "pandas"], "main_threads": None}


def test_condpt_tag_starts_the_forkserver_before_its_own_imports_with_two_workers(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(pool, "start_forkserver", lambda threads, modules=frozenset(), warm=None: calls.append("forkserver"))
    real = run_mod.tag_corpus
    monkeypatch.setattr(run_mod, "tag_corpus", lambda *a, **k: calls.append("run") or real(*a, **k))
    src = write_lines(tmp_path / "c.jsonl", [json.dumps({"id": f"d{i}", "text": f"Calm tea {i}."}) for i in range(4)])
    cfg = tmp_path / "tag.yaml"
    cfg.write_text("classifier: {spec: none}\nrows_per_shard: 2\n")
    for workers, tasks, expected in ((2, [], ["forkserver", "run"]), (1, ["--tasks", "2"], ["run"]),
                                     (2, ["--tasks", "1"], ["run"])):
        calls.clear()
        res = CliRunner().invoke(app, ["tag", str(src), "--out", str(tmp_path / f"out{workers}{tasks}"), "--config",
                                       str(cfg), "--quiet", "--workers", str(workers), *tasks])
        assert res.exit_code == 0, res.output
        assert calls == expected  # with 2 workers the CLI starts it before it imports the run


_WARM_PROBE = '''
import gc, json, sys
import multiprocess as mp
from condpt.tagging.pool import start_forkserver

def probe(key):
    from condpt.tagging import datatrove_steps as ds
    cascade = ds._CASCADES.get(key)
    return {"inherited": cascade is not None and cascade._lexicon is not None, "frozen": gc.get_freeze_count() > 0}

if __name__ == "__main__":
    from condpt.tagging.warm import tag_config
    cfg = tag_config(sys.argv[1], "none")
    key = json.dumps(cfg.model_dump(mode="json"), sort_keys=True)  # as CondptTagger looks it up
    start_forkserver(1, warm={"options": {"config": sys.argv[1], "classifier": "none", "text_field": None,
                                          "id_field": None}})
    with mp.get_context("forkserver").Pool(1) as p:
        print(json.dumps(p.map(probe, [key])[0]))
'''


def test_workers_inherit_the_cascade_the_forkserver_loaded_and_its_frozen_heap(tmp_path):
    """`condpt tag --workers 2` has the server load the run's cascade (`condpt.tagging.warm`), built from the same
    options as the main process's config, so a worker's tagger finds it loaded instead of loading its own."""
    script, cfg = tmp_path / "probe.py", tmp_path / "tag.yaml"
    script.write_text(_WARM_PROBE)
    cfg.write_text("granularity: document\nprefilter: {extra_terms: {teapot: 0.5}}\n")
    res = subprocess.run([sys.executable, str(script), str(cfg)], capture_output=True, text=True, check=False,
                         timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads(res.stdout.splitlines()[-1]) == {"inherited": True, "frozen": True}


def test_a_cascade_the_forkserver_cannot_load_is_left_to_the_workers(tmp_path, monkeypatch):
    import gc

    from condpt.tagging import datatrove_steps, warm

    monkeypatch.setattr(datatrove_steps, "_CASCADES", {})
    monkeypatch.setenv(warm.WARM_VAR, json.dumps({"options": {"config": str(tmp_path / "missing.yaml")}}))
    try:
        warm._warm_from_environment()  # the server's import: no error (a worker reports it), nothing shared
    finally:
        gc.unfreeze()
    assert datatrove_steps._CASCADES == {}


def test_the_forkserver_loads_only_trained_scorers_without_torch(tmp_path):
    """A torch model in the server could start a CUDA context or a thread pool, which a forked worker cannot use."""
    from condpt.tagging import warm

    for kind, expected in (("embedding", False), ("hf", False), ("fasttext", True), ("static", True)):
        (tmp_path / kind).mkdir()
        (tmp_path / kind / "scorer.json").write_text(json.dumps({"kind": kind}))
        assert warm._fork_safe(str(tmp_path / kind)) is expected, kind
    assert not warm._fork_safe(str(tmp_path / "nowhere"))  # not trained (or not there): left to the workers
    assert not warm._fork_safe("default")  # the embedding default, trained or not
