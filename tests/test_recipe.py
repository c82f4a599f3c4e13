"""`condpt.recipe`: shipped configs found in the package, the launch line, the training processes' environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from condpt import recipe
from condpt.recipe import launch_command
from condpt.shipped import CONFIGS, config_path, shipped_config, shipped_names

REPO = Path(__file__).resolve().parents[1]


def test_shipped_configs_live_in_the_package():
    assert CONFIGS == Path(recipe.__file__).resolve().parent / "configs"
    assert {"deepspeed-zero2-cpu", "deepspeed-zero3-cpu", "single-process"} <= set(shipped_names("accelerate"))
    assert shipped_names("deepspeed") == ["zero2", "zero3"] and "demo" in shipped_names("run")
    for name in shipped_names("accelerate"):
        acc = yaml.safe_load(shipped_config("accelerate", name).read_text())
        ds = (acc.get("deepspeed_config") or {}).get("deepspeed_config_file")
        if ds:  # named relative to the accelerate YAML, so it holds wherever the package is installed
            assert (shipped_config("accelerate", name).parent / ds).resolve().parent == CONFIGS / "deepspeed", name
    with pytest.raises(FileNotFoundError, match="shipped: deepspeed-zero2-cpu"):
        shipped_config("accelerate", "zero9")


def test_config_path_name_or_path(tmp_path):
    assert config_path("single-process", "accelerate") == CONFIGS / "accelerate" / "single-process.yaml"
    assert config_path("mine.yaml", "accelerate", base=tmp_path) == tmp_path / "mine.yaml"
    assert config_path("sub/mine", "accelerate", base=tmp_path) == tmp_path / "sub" / "mine"
    assert config_path("mine.yaml", "accelerate") == Path("mine.yaml")  # no base: the working directory's


def test_launch_command_runs_the_package_module():
    cmd = launch_command("run.yaml", ["train.max_steps=3"], accelerate_config=CONFIGS / "accelerate" / "x.yaml")
    assert cmd[:2] == [sys.executable, "-c"] and "accelerate.commands.launch import main" in cmd[2]
    assert cmd[cmd.index("-m", 1 + cmd.index("--config_file")):] == [
        "-m", "condpt.recipe", "--config", "run.yaml", "train.max_steps=3"]
    assert not any("recipes" in part for part in cmd)
    assert "--config_file" not in launch_command("run.yaml")


def test_training_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("TORCH_EXTENSIONS_DIR", raising=False)
    monkeypatch.setenv("CONDPT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_CONFIG_FILE", "../deepspeed/zero2.json")
    monkeypatch.chdir(tmp_path)
    recipe._prepare_environment()
    assert os.environ["TORCH_EXTENSIONS_DIR"] == str(tmp_path / "cache" / "torch_extensions")
    assert os.environ["ACCELERATE_DEEPSPEED_CONFIG_FILE"] == str(CONFIGS / "deepspeed" / "zero2.json")
    # A file the working directory has wins (accelerate's own rule); a set TORCH_EXTENSIONS_DIR is kept.
    (tmp_path / "mine.json").write_text(json.dumps({"zero_optimization": {"stage": 2}}))
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_CONFIG_FILE", "mine.json")
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", "/somewhere")
    recipe._prepare_environment()
    assert os.environ["ACCELERATE_DEEPSPEED_CONFIG_FILE"] == "mine.json"
    assert os.environ["TORCH_EXTENSIONS_DIR"] == "/somewhere"
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_CONFIG_FILE", "nowhere.json")
    with pytest.raises(FileNotFoundError, match="nowhere.json"):
        recipe._prepare_environment()


def test_checkout_entry_is_the_package_recipe(tmp_path):
    """`recipes/condpt.py` (for `accelerate launch` from a checkout) and `python -m condpt.recipe` agree."""
    tiny = REPO / "recipes" / "configs" / "tiny-cpu.yaml"
    outs = [subprocess.run([sys.executable, *entry, "--config", str(tiny), f"output_dir={tmp_path}", "--dry-run"],
                           capture_output=True, text=True, check=False, cwd=tmp_path)
            for entry in ([str(REPO / "recipes" / "condpt.py")], ["-m", "condpt.recipe"])]
    assert [o.returncode for o in outs] == [0, 0], [o.stderr for o in outs]
    assert outs[0].stdout == outs[1].stdout and "tiny-tagged.jsonl" in outs[0].stdout


def test_condpt_train_names_the_shipped_accelerate_configs(tmp_path, monkeypatch):
    """An unknown shipped name or a missing file is refused before anything is launched."""
    from typer.testing import CliRunner

    from condpt.cli import register_commands

    launched = []
    monkeypatch.setattr(subprocess, "call", lambda cmd, **kw: launched.append(cmd) or 0)
    tiny = REPO / "recipes" / "configs" / "tiny-cpu.yaml"

    def train(*args: str):
        return CliRunner().invoke(register_commands(), ["train", "--config", str(tiny), *args])

    res = train("--accelerate-config", "zero9")
    assert res.exit_code == 2 and "shipped: deepspeed-zero2-cpu" in res.output and not launched
    res = train("--accelerate-config", str(tmp_path / "mine.yaml"))
    assert res.exit_code == 2 and "mine.yaml: no such file" in res.output and not launched
    res = train("--accelerate-config", "single-process", f"output_dir={tmp_path}")
    assert res.exit_code == 0, res.output
    assert launched == [launch_command(tiny, [f"output_dir={tmp_path}"],
                                       accelerate_config=CONFIGS / "accelerate" / "single-process.yaml")]


def test_a_shipped_run_config_is_named_by_its_name(tmp_path, monkeypatch, capsys):
    """From a wheel there is no recipes/ to point --config at: `--config demo` is the shipped run config
    (docs/recipe.md names it so), for `condpt train` and `python -m condpt.recipe`; a file of that name in the
    working directory wins, and a path that does not exist says what is shipped instead."""
    from typer.testing import CliRunner

    from condpt.cli import register_commands

    launched = []
    monkeypatch.setattr(subprocess, "call", lambda cmd, **kw: launched.append(cmd) or 0)
    monkeypatch.chdir(tmp_path)
    data = f"data.sources.0.path={REPO / 'recipes' / 'data' / 'tiny-tagged.jsonl'}"

    def train(*args: str):
        return CliRunner().invoke(register_commands(), ["train", *args])

    res = train("--config", "demo", "--accelerate-config", "single-process", data)
    assert res.exit_code == 0, res.output
    assert launched[0][launched[0].index("--config", launched[0].index("-m")) + 1] == str(shipped_config("run", "demo"))
    assert recipe.main(["--config", "demo", data, "--dry-run"]) == 0
    assert "n_layer: 3" in capsys.readouterr().out
    res = train("--config", "recipes/configs/tiny-cpu.yaml")
    assert res.exit_code == 2 and len(launched) == 1
    assert "does not exist (shipped run configs, named without a path: demo;" in res.output
    assert "source checkout" in res.output
    res = train("--config", "demoo")
    assert res.exit_code == 2 and "no shipped run config 'demoo'" in res.output
    (tmp_path / "demo").write_text("output_dir: mine\n")
    assert recipe.run_config_path("demo") == Path("demo")


def test_the_launcher_process_keeps_deepspeeds_notice_off_stdout():
    """The launcher imports DeepSpeed, which prints 'Setting accelerator to CPU' on stdout unless condpt's
    filter is installed first; the launch command's own process must install it."""
    import subprocess

    from condpt.recipe import _LAUNCHER

    importing = _LAUNCHER.replace("main()", "import deepspeed  # noqa: F401")
    assert importing != _LAUNCHER
    bare = subprocess.run([sys.executable, "-c", "import deepspeed"], check=False, capture_output=True, text=True)
    ours = subprocess.run([sys.executable, "-c", importing], check=False, capture_output=True, text=True)
    assert bare.returncode == ours.returncode == 0, ours.stderr
    if "Setting accelerator" not in bare.stdout:
        pytest.skip("DeepSpeed prints no CPU notice here (an accelerator was found)")
    assert "Setting accelerator" not in ours.stdout


@pytest.mark.parametrize("repeat", [1, 30])  # no block at all (an IndexError in datasets), a few blocks
def test_too_little_training_data_is_one_line_naming_the_source(tmp_path, capsys, repeat):
    """A tag output that wrote almost nothing: a ValueError traceback in each rank became one line naming the
    source and the counts, exit 2."""
    src = tmp_path / "few.jsonl"
    text = "One short document about the lighthouse. " * repeat
    src.write_text(json.dumps({"id": "a", "text": text, "tag": "good"}) + "\n", encoding="utf-8")
    rc = recipe.main(["--config", "demo", f"data.sources.0.path={src}", f"output_dir={tmp_path / 'run'}",
                      "data.heldout_fraction=0"])
    err = capsys.readouterr().err
    assert rc == 2, err
    line = next(x for x in err.splitlines() if x.startswith("error:"))
    assert "too little training data" in line and str(src) in line and "blocks" in line, err
    assert "Traceback" not in err
