"""What a new user meets first: `--help`, `--version`, and errors that name the flag before any slow work."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

import click
import pytest
import typer
from typer.testing import CliRunner

from condpt.cli import register_commands

APP = register_commands()
COMMANDS = sorted(typer.main.get_command(APP).commands.items())


def _invoke(*args) -> click.testing.Result:
    return CliRunner().invoke(APP, [str(a) for a in args])


def test_train_help_keeps_the_override_syntax():
    res = _invoke("train", "--help")
    assert res.exit_code == 0, res.output
    assert "[key=value ...]" in res.output


def test_version_is_the_installed_version():
    res = _invoke("--version")
    assert res.exit_code == 0, res.output
    assert res.output.strip() == f"condpt {importlib.metadata.version('condpt')}"


@pytest.mark.parametrize("name", [None] + [n for n, _ in COMMANDS])
def test_help_shows_no_bool_metavar(name):
    res = _invoke(*([name] if name else []), "--help")
    assert res.exit_code == 0, res.output
    assert "<bool>" not in res.output


@pytest.mark.parametrize("name,cmd", COMMANDS)
def test_every_option_and_argument_has_help(name, cmd):
    missing = [p.name for p in cmd.params if not (getattr(p, "help", None) or "").strip()]
    assert not missing, f"condpt {name}: no help for {missing}"


@pytest.mark.parametrize("name,cmd", [(n, c) for n, c in COMMANDS if any("--out" in p.opts for p in c.params)])
def test_out_says_whether_it_is_a_file_or_a_directory(name, cmd):
    """`--out` is a directory for most commands and one file for `eval` and `calibrate`: the metavar and
    the help say which (the tests below check that each refuses the other kind)."""
    (out,) = [p for p in cmd.params if "--out" in p.opts]
    if out.metavar == "DIR":
        assert out.help.startswith("Directory"), (name, out.help)
    else:
        assert out.metavar.startswith("FILE"), (name, out.metavar)
        assert out.help.startswith("File"), (name, out.help)


def test_eval_checks_world_before_loading_the_model(tmp_path, monkeypatch):
    import condpt.evaluate

    def no_model(*a, **k):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(condpt.evaluate, "evaluate", no_model)
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}", encoding="utf-8")  # past the cheap run-directory check
    res = _invoke("eval", model, "--world", tmp_path / "no-such-world")
    assert res.exit_code == 2, res.output
    assert "--world" in res.output and "no-such-world" in res.output


def test_eval_refuses_a_directory_as_out_before_loading_the_model(tmp_path, monkeypatch):
    import condpt.evaluate

    monkeypatch.setattr(condpt.evaluate, "evaluate", lambda *a, **k: pytest.fail("model loaded"))
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}", encoding="utf-8")  # past the cheap run-directory check
    res = _invoke("eval", model, "--out", tmp_path)
    assert res.exit_code == 2, res.output
    assert "--out" in res.output and "directory" in res.output


def test_calibrate_refuses_a_directory_as_out(tmp_path):
    res = _invoke("calibrate", tmp_path, "--target-fraction", "0.1", "--out", tmp_path)
    assert res.exit_code == 2, res.output
    assert "--out" in res.output and "directory" in res.output


@pytest.mark.parametrize("command", ["eval", "calibrate"])
def test_a_file_out_ending_in_a_separator_is_refused(tmp_path, monkeypatch, command):
    """`--out evaldir/` names a directory that does not exist yet: it wrote a plain file `evaldir` (click's
    dir_okay=False checks only existing paths, and Path drops the trailing slash)."""
    import condpt.evaluate

    monkeypatch.setattr(condpt.evaluate, "evaluate", lambda *a, **k: pytest.fail("model loaded"))
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}", encoding="utf-8")  # past the cheap run-directory check
    args = (model,) if command == "eval" else (tmp_path, "--target-fraction", "0.1")
    res = _invoke(command, *args, "--out", f"{tmp_path / 'outdir'}/")
    assert res.exit_code == 2, res.output
    assert "--out" in res.output and "directory" in res.output
    assert not (tmp_path / "outdir").exists()


def test_world_refuses_a_file_as_out(tmp_path):
    f = tmp_path / "world.json"
    f.write_text(json.dumps({}), encoding="utf-8")
    res = _invoke("world", "--out", f, "--n-ai-docs", "10", "--n-background", "10")
    assert res.exit_code == 2, res.output
    assert "--out" in res.output and "file" in res.output


@pytest.mark.parametrize("name,cmd", COMMANDS)
def test_usage_names_arguments_as_the_docstrings_do(name, cmd):
    """Docstrings say MODEL_DIR, INPUT..., TAGGED_DIR, LABELLED; the usage line must use the same names."""
    usage = _invoke(name, "--help").output.splitlines()[0]
    for p in cmd.params:
        if p.param_type_name == "argument":
            assert p.metavar and p.metavar.isupper() and p.metavar in usage, (name, p.name, p.metavar, usage)


def test_experiment_reports_an_os_error_in_one_line(monkeypatch):
    """A full disk or a permission taken away mid-grid was an OSError traceback from `condpt experiment`."""
    import condpt.experiment

    def full(*a, **k):
        raise OSError(28, "No space left on device", "runs/x/final")

    monkeypatch.setattr(condpt.experiment, "run_grid", full)
    res = _invoke("experiment", "--config", Path(__file__).resolve().parents[2] / "examples/grids/grid-main.yaml")
    assert res.exit_code == 1, res.output
    assert "error: [Errno 28] No space left on device: 'runs/x/final'" in res.output
    assert "Traceback" not in res.output
