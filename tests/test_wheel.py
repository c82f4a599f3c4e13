"""condpt as a package, not a checkout: build the wheel, install it into a fresh environment, and train a
user's own config from the user's own directory (nothing of the source tree on the path)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("condpt", "tokenizer_ext")

USER_CONFIG = """\
output_dir: out
model:
  config: {arch: gpt2, d_model: 32, n_layer: 1, n_head: 2}
tokenizer: {source: train-bpe, vocab_size: 400}
data:
  sources: [{path: corpus/tagged.jsonl}]
  block_size: 64
train: {max_steps: 3, micro_batch_size: 4, log_every: 1, eval_batches: 2}
"""


def _run(cmd: list, cwd: Path, env: dict, timeout: int = 300) -> subprocess.CompletedProcess:
    res = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                         check=False)
    assert res.returncode == 0, f"{cmd}\n{res.stdout[-3000:]}\n{res.stderr[-5000:]}"
    return res


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(wheel, venv python, venv bin, clean env): the wheel built from a copy of the sources, installed with
    --no-deps into a new venv that reuses this environment's dependencies through a .pth line (a .pth file
    found through a path line is not run, so this environment's editable condpt stays invisible)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for pkg in PACKAGES:
        shutil.copytree(REPO / pkg, src / pkg, ignore=ignore)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TORCH_EXTENSIONS_DIR")}
    env.update(PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1", CONDPT_CACHE=str(tmp / "cache"))
    built = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", tmp / "dist", src],
                 tmp, env)
    # a user building or installing it sees no deprecation notice (setuptools: `project.license` as a table)
    assert "BuildBackendWarning" not in built.stdout + built.stderr, built.stdout + built.stderr
    (wheel,) = (tmp / "dist").glob("condpt-*.whl")

    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], tmp, env)
    py = venv / "bin" / "python"
    purelib = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp, env).stdout.strip())
    (purelib / "_condpt_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "--python", py, "install", "--no-deps", wheel], tmp, env)
    return wheel, py, venv / "bin", env


def test_wheel_carries_every_package_file(installed):
    wheel = installed[0]
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [str(p.relative_to(REPO)) for pkg in PACKAGES for p in (REPO / pkg).rglob("*")
               if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
               and str(p.relative_to(REPO)) not in names]
    assert not missing, f"not in the wheel (pyproject package-data globs?): {missing}"


def test_installed_package_finds_its_configs_not_a_checkout(installed, tmp_path):
    _, py, _, env = installed
    code = ("import os, condpt, condpt.recipe as r; from condpt.experiment_config import GridConfig;"
            "g = GridConfig(arms=[{'name': 'mle'}]); r._prepare_environment();"
            "print(condpt.__file__); print(g.recipe); print(g.accelerate_config);"
            "print(os.environ['ACCELERATE_DEEPSPEED_CONFIG_FILE']); print(os.environ['TORCH_EXTENSIONS_DIR'])")
    env = {**env, "ACCELERATE_DEEPSPEED_CONFIG_FILE": "../deepspeed/zero2.json"}
    out = _run([py, "-c", code], tmp_path, env).stdout.split()
    site = Path(out[0]).parent.parent
    assert site.parent.parent.parent == py.parent.parent  # venv/lib/pythonX.Y/site-packages
    assert [Path(p) for p in out[1:4]] == [site / "condpt" / "configs" / "run" / "demo.yaml",
                                           site / "condpt" / "configs" / "accelerate" / "deepspeed-zero2-cpu.yaml",
                                           site / "condpt" / "configs" / "deepspeed" / "zero2.json"]
    assert out[4] == str(Path(env["CONDPT_CACHE"]) / "torch_extensions")


def test_user_config_trains_from_an_installed_wheel(installed, tmp_path):
    *_, bin_dir, env = installed
    user = tmp_path / "my-project"
    (user / "corpus").mkdir(parents=True)
    shutil.copy2(REPO / "recipes" / "data" / "tiny-tagged.jsonl", user / "corpus" / "tagged.jsonl")
    (user / "my-run.yaml").write_text(USER_CONFIG)
    env = {**env, "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"}

    dry = _run([bin_dir / "condpt", "train", "--config", "my-run.yaml", "--dry-run"], user, env)
    assert f"path: {user / 'corpus' / 'tagged.jsonl'}" in dry.stdout

    _run([bin_dir / "condpt", "train", "--config", "my-run.yaml", "--accelerate-config", "single-process"], user, env)
    final = user / "out" / "final"
    assert (final / "config.json").is_file() and (final / "condpt_tokens.json").is_file()
    assert not (REPO / "out").exists()


def test_a_wheel_user_starts_from_the_shipped_run_config(installed, tmp_path):
    """README and docs/recipe.md quote `--config recipes/configs/...`, which exists only in a clone: from a wheel
    the shipped `demo` is named by its name, and the clone's path is refused saying what is shipped."""
    *_, bin_dir, env = installed
    shutil.copy2(REPO / "recipes" / "data" / "tiny-tagged.jsonl", tmp_path / "tagged.jsonl")
    dry = _run([bin_dir / "condpt", "train", "--config", "demo", "data.sources.0.path=tagged.jsonl", "--dry-run"],
               tmp_path, env)
    assert "n_layer: 3" in dry.stdout
    res = subprocess.run([str(bin_dir / "condpt"), "train", "--config", "recipes/configs/tiny-cpu.yaml"], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode == 2 and "shipped run configs, named without a path: demo" in res.stderr, res.stderr
