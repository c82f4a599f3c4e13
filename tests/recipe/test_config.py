"""RunConfig: YAML + dotted overrides, relative paths, fail-fast errors naming the field, --dry-run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from condpt.config import ConfigError, OptimConfig, load_config

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "recipes" / "configs" / "tiny-cpu.yaml"
GPT2_SMALL = REPO / "recipes" / "configs" / "gpt2-small.yaml"


def test_shipped_configs_validate():
    tiny = load_config(TINY)
    assert tiny.data.sources[0].path == REPO / "recipes" / "data" / "tiny-tagged.jsonl"
    assert tiny.data.sources[0].path.is_file(), "tiny-cpu.yaml must work on a fresh checkout"
    small = load_config(GPT2_SMALL)
    assert small.model.config["n_layer"] == 12 and small.data.block_size == 1024


def test_overrides_and_types(tmp_path):
    cfg = load_config(TINY, [f"output_dir={tmp_path}", "train.max_steps=7", "optim.lr=1e-4",
                             "data.policy.mode=mle", "data.sources.0.weight=2", "model.config.n_layer=3",
                             "train.report_to=[tensorboard]"])
    assert cfg.output_dir == tmp_path and cfg.train.max_steps == 7 and cfg.optim.lr == 1e-4
    assert cfg.data.policy.mode == "mle" and cfg.data.sources[0].weight == 2.0
    assert cfg.model.config["n_layer"] == 3 and cfg.train.report_to == ["tensorboard"]


@pytest.mark.parametrize("override, field", [
    ("train.max_steps=0", "train.max_steps"),
    ("train.typo=1", "train.typo"),
    ("data.policy.mode=maybe", "data.policy.mode"),
    ("optim.schedule=exp", "optim.schedule"),
    ("data.block_size=1", "data.block_size"),
])
def test_invalid_field_is_named(override, field):
    with pytest.raises(ConfigError) as e:
        load_config(TINY, [override])
    assert field in str(e.value) and str(TINY) in str(e.value)


def test_model_source_must_be_one(tmp_path):
    with pytest.raises(ConfigError, match="exactly one of model.config"):
        load_config(TINY, [f"model.checkpoint={tmp_path}"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(TINY, ["train.max_steps"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_yaml_relative_paths(tmp_path):
    (tmp_path / "sub").mkdir()
    raw = yaml.safe_load(TINY.read_text())
    raw["data"]["sources"][0]["path"] = "corpus.jsonl"
    (tmp_path / "sub" / "run.yaml").write_text(yaml.safe_dump(raw))
    cfg = load_config(tmp_path / "sub" / "run.yaml")
    assert cfg.data.sources[0].path == tmp_path / "sub" / "corpus.jsonl"
    assert str(cfg.output_dir) == raw["output_dir"], "output_dir stays relative to the working directory"


def test_lr_schedule_is_a_pure_function():
    o = OptimConfig(lr=1.0, warmup_steps=10, schedule="cosine", min_lr_ratio=0.1)
    assert o.lr_at(0, 100) == pytest.approx(0.1) and o.lr_at(9, 100) == pytest.approx(1.0)
    assert o.lr_at(10, 100) == pytest.approx(1.0) and o.lr_at(100, 100) == pytest.approx(0.1)
    assert o.lr_at(55, 100) == pytest.approx(0.55)
    lin = OptimConfig(lr=1.0, schedule="linear", min_lr_ratio=0.0)
    assert lin.lr_at(50, 100) == pytest.approx(0.5)


@pytest.mark.slow  # two interpreter start-ups with torch/datasets imports: ~25 s on 2 busy cores
def test_dry_run_prints_resolved_config(tmp_path):
    res = subprocess.run(check=False, args=[sys.executable, str(REPO / "recipes" / "condpt.py"), "--config", str(TINY), "--dry-run",
                          f"output_dir={tmp_path}", "train.max_steps=3"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    printed = yaml.safe_load(res.stdout)
    assert printed["train"]["max_steps"] == 3 and printed["output_dir"] == str(tmp_path)
    assert printed["data"]["policy"]["mode"] == "condition"
    assert not (tmp_path / "metrics.jsonl").exists()
    bad = subprocess.run(check=False, args=[sys.executable, str(REPO / "recipes" / "condpt.py"), "--config", str(TINY),
                          "train.max_steps=-2"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "train.max_steps" in bad.stderr and "Traceback" not in bad.stderr
