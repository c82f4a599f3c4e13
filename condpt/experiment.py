"""The experiment grid: data-policy arms × label coverage × seeds on one prophecy world.

Each run is the real recipe (`accelerate launch ... -m condpt.recipe --config RECIPE key=value...`) in a
subprocess, then the prophecy suite on `OUTPUT_DIR/final`. Everything shared by the arms is built once:
the world, its tags (condpt's own cascade, never the generator's labels), and one tokenizer with the
control tokens, so every arm sees the same token ids and the held-out loss is comparable.

    out_dir/
      world/                    the generated world (train / heldout / hidden labels / scenarios)
      tagged-<granularity>/     `condpt tag` output the arms train on
      tagging.json              the tagger's precision/recall against the hidden labels
      tokenizer/                the shared tokenizer + condpt_tokens.json
      runs/<arm>-cov<c>-s<seed>/  recipe output (final/, metrics.jsonl) + eval.json + train.log
      results-<grid>.json/.md/.png  (one set per grid file, so grids can share an out_dir)
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from condpt.recipe import config_path, is_shipped_name, launch_command
from condpt.world import WorldConfig, generate_world, tagging_agreement, write_world
from condpt.yamlfile import read_yaml


class ArmConfig(BaseModel):
    """One data policy: `policy` is merged into the recipe's `data.policy`."""

    model_config = ConfigDict(extra="forbid")

    name: str
    policy: dict[str, Any] = Field(default_factory=dict)
    tagging: Literal["document", "sentence"] = "document"
    deploy: Literal["none", "good", "self"] = "good"
    overrides: list[str] = Field(default_factory=list, description="extra recipe key=value overrides")


class TaggerSettings(BaseModel):
    """How condpt's cascade tags the world (a subset of `TagConfig`: the classifier and threshold)."""

    model_config = ConfigDict(extra="forbid")

    classifier: str = Field("none", description="cascade classifier spec: none (lexicon only: distinct phrases, "
                                                 "every negative scores 0), lexicon-density (graded: "
                                                 "condpt.tagging.density), default, fasttext-default, or a trained "
                                                 "classifier directory")
    threshold: float | None = None


class GridConfig(BaseModel):
    """A whole experiment (YAML). Input paths in the YAML (recipe, accelerate config, world.gutenberg_path,
    a tagger classifier directory) are relative to the YAML file's directory; `out_dir`, an output, is relative
    to the working directory. `recipe` and `accelerate_config` may also name a shipped config (`demo`,
    `deepspeed-zero2-cpu`, ...: see `condpt.recipe`)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("results", description="results file stem: OUT/NAME.json/.md/.png (from_yaml: the file's stem)")
    out_dir: Path = Path("runs/grid")
    world: WorldConfig = Field(default_factory=WorldConfig)
    tagger: TaggerSettings = Field(default_factory=TaggerSettings)
    recipe: Path = Field("demo", validate_default=True, description="run config: a path or a shipped name")
    accelerate_config: Path = Field("deepspeed-zero2-cpu", validate_default=True,
                                    description="accelerate config: a path or a shipped name")
    overrides: list[str] = Field(default_factory=list, description="recipe overrides for every run")
    vocab_size: int = Field(4096, ge=300)
    arms: list[ArmConfig] = Field(min_length=1)
    coverages: list[float] = Field(default_factory=lambda: [1.0])
    seeds: list[int] = Field(default_factory=lambda: [0])
    per_split: int | None = Field(60, description="scenarios per split in evaluation (None: all)")
    eval_threads: int = Field(1, ge=1, description="torch threads for evaluation")

    @field_validator("recipe", "accelerate_config", mode="before")
    @classmethod
    def _shipped_or_path(cls, value: Any, info) -> Any:
        if isinstance(value, str | Path):
            try:
                path = config_path(value, "run" if info.field_name == "recipe" else "accelerate")
            except FileNotFoundError as e:
                raise ValueError(str(e)) from None
            if not path.is_file():
                raise ValueError(f"{path}: no such file")
            return path
        return value

    @classmethod
    def from_yaml(cls, path: str | Path) -> GridConfig:
        path = Path(path)
        raw = read_yaml(path, "grid config") or {}
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: expected a mapping")
        _resolve_inputs(raw, path.resolve().parent)
        raw.setdefault("name", f"results-{path.stem}")
        try:
            return cls.model_validate(raw)
        except ValidationError as e:
            fields = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
            raise ValueError(f"{path}: {fields}") from e


def _resolve_inputs(raw: dict[str, Any], base: Path) -> None:
    """Input paths written in a grid YAML are relative to its folder (shipped config names stay names)."""
    def rel(value: Any) -> Any:
        return str((base / value).resolve()) if isinstance(value, str) and not Path(value).is_absolute() else value

    for key in ("recipe", "accelerate_config"):
        if isinstance(raw.get(key), str) and not is_shipped_name(raw[key]):
            raw[key] = rel(raw[key])
    world = raw.get("world")
    if isinstance(world, dict) and world.get("gutenberg_path"):
        world["gutenberg_path"] = rel(world["gutenberg_path"])
    tagger = raw.get("tagger")
    # The classifier is a built-in name or a trained classifier directory; a directory beside the grid wins.
    if isinstance(tagger, dict) and isinstance(tagger.get("classifier"), str) and (base / tagger["classifier"]).is_dir():
        tagger["classifier"] = rel(tagger["classifier"])


# ------------------------------------------------------------------------------------------- shared


def prepare_world(cfg: WorldConfig, out_dir: Path) -> Path:
    """Generate and write the world once (skipped if `out_dir/world/world.json` matches the config)."""
    world_dir = out_dir / "world"
    meta = world_dir / "world.json"
    if meta.is_file() and json.loads(meta.read_text())["config"] == json.loads(cfg.model_dump_json()):
        return world_dir
    write_world(generate_world(cfg), world_dir)
    return world_dir


def tag_world(world_dir: Path, out_dir: Path, granularity: str, tagger: TaggerSettings) -> tuple[Path, dict]:
    """Tag the world's training documents with condpt's cascade; report agreement with hidden labels."""
    import pyarrow.parquet as pq

    from condpt.tagging.cascade import TagConfig
    from condpt.tagging.density import LexiconDensity
    from condpt.tagging.run import tag_corpus

    graded = tagger.classifier == LexiconDensity.name  # a world scorer, not a cascade spec
    tagged = out_dir / (f"tagged-{granularity}-{LexiconDensity.name}" if graded else f"tagged-{granularity}")
    cfg = TagConfig(granularity=granularity, classifier={"spec": "none" if graded else tagger.classifier},
                    threshold=tagger.threshold)
    t0 = time.time()
    if not (tagged / "report.json").is_file():
        tag_corpus([world_dir / "train.jsonl"], tagged, cfg, scorer=LexiconDensity() if graded else None,
                   progress=False)
    tags: dict[str, str] = {}
    for f in sorted((tagged / "data").rglob("*.parquet")):
        t = pq.read_table(f, columns=["id", "tag"]).to_pydict()
        tags.update(zip(t["id"], t["tag"]))
    with (world_dir / "labels.jsonl").open(encoding="utf-8") as f:
        labels = [json.loads(line) for line in f]
    report = {"granularity": granularity, "classifier": tagger.classifier, "seconds": round(time.time() - t0, 1),
              **tagging_agreement(labels, tags)}
    return tagged, report


def prepare_tokenizer(world_dir: Path, out_dir: Path, vocab_size: int) -> Path:
    """One byte-level BPE trained on the world's training text, with condpt's control tokens, for all arms."""
    from condpt.tiny import train_bpe_tokenizer
    from tokenizer_ext import MANIFEST_NAME, add_control_tokens

    tok_dir = out_dir / "tokenizer"
    if (tok_dir / MANIFEST_NAME).is_file():
        return tok_dir
    with (world_dir / "train.jsonl").open(encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f]
    tok = train_bpe_tokenizer(texts, vocab_size=vocab_size)
    manifest = add_control_tokens(tok)
    tok.save_pretrained(tok_dir)
    manifest.save(tok_dir)
    return tok_dir


# ------------------------------------------------------------------------------------------- one run


def policy_overrides(policy: dict[str, Any]) -> list[str]:
    """`data.policy.KEY=VALUE` overrides (values as JSON, which the recipe parses as YAML)."""
    return [f"data.policy.{k}={json.dumps(v)}" for k, v in policy.items()]


def launch_recipe(recipe: Path, accelerate_config: Path, overrides: Sequence[str], log_path: Path) -> None:
    """`accelerate launch --config_file ACC -m condpt.recipe --config RECIPE overrides...`, logged."""
    cmd = launch_command(recipe, overrides, accelerate_config=accelerate_config)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w", encoding="utf-8") as log:
        log.write(" ".join(cmd) + "\n")
        log.flush()
        proc = subprocess.run(cmd, check=False, env=env, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
        raise RuntimeError(f"recipe run failed (exit {proc.returncode}); log {log_path}:\n" + "\n".join(tail))


def run_arm(name: str, *, policy: dict[str, Any], deploy: str, tagged: Path, tokenizer: Path, world_dir: Path,
            run_dir: Path, recipe: Path, accelerate_config: Path, seed: int, overrides: Sequence[str] = (),
            per_split: int | None = 60, eval_threads: int = 1) -> dict:
    """Train one arm with the recipe (skipped if `final/` exists) and evaluate it; returns its record."""
    from condpt.evaluate import evaluate

    final = run_dir / "final"
    t0 = time.time()
    if not (final / "config.json").is_file():
        ovr = [f"output_dir={run_dir}", f"seed={seed}", f"data.sources.0.path={tagged}",
               f"tokenizer.source={tokenizer}", "train.resume=never", *policy_overrides(policy), *overrides]
        launch_recipe(recipe, accelerate_config, ovr, run_dir / "train.log")
    train_s = time.time() - t0
    eval_path = run_dir / "eval.json"
    if eval_path.is_file():
        res = json.loads(eval_path.read_text())
    else:
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(eval_threads)
        try:
            res = evaluate(final, world_dir=world_dir, deploy=deploy, per_split=per_split)
        finally:
            torch.set_num_threads(threads)
        eval_path.write_text(json.dumps(res, indent=1) + "\n")
    return {"arm": name, "seed": seed, "policy": policy, "deploy": deploy, "train_seconds": round(train_s, 1),
            "seconds": round(time.time() - t0, 1), **res["summary"],
            "choices": res["choices"], "self_image": {c: v["doom_rate"] for c, v in res["self_image"].items()}}


# ------------------------------------------------------------------------------------------- grid


def _arm_runs(cfg: GridConfig) -> list[tuple[ArmConfig, float, int]]:
    runs = []
    for seed in cfg.seeds:
        for arm in cfg.arms:
            # Coverage only changes arms that act on the tags; an MLE arm is run once per seed.
            tag_free = arm.policy.get("mode", "condition") == "mle" and arm.policy.get("upweight_good", 1) == 1
            for cov in ([1.0] if tag_free else cfg.coverages):
                runs.append((arm, cov, seed))
    return runs


def run_grid(cfg: GridConfig, *, log=print) -> dict:
    """Run (or resume) every arm × coverage × seed; write OUT/NAME.json/.md/.png; return the results."""
    out = Path(cfg.out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    world_dir = prepare_world(cfg.world, out)
    meta = json.loads((world_dir / "world.json").read_text())
    log(f"[{time.strftime('%H:%M:%S')}] world: {meta['counts']} ({meta['background']} background)")
    tok_dir = prepare_tokenizer(world_dir, out, cfg.vocab_size)
    tagged: dict[str, Path] = {}
    tagging: dict[str, dict] = {}
    for gran in sorted({a.tagging for a in cfg.arms}):
        tagged[gran], tagging[gran] = tag_world(world_dir, out, gran, cfg.tagger)
        log(f"tagged ({gran}): precision {tagging[gran]['precision']:.3f} recall {tagging[gran]['recall']:.3f} "
            f"aligned stories tagged bad {tagging[gran]['aligned_tagged_bad']:.3f}")
    (out / "tagging.json").write_text(json.dumps(tagging, indent=1) + "\n")
    records = []
    results_path = out / f"{cfg.name}.json"
    for arm, cov, seed in _arm_runs(cfg):
        label = f"{arm.name}-cov{cov:g}-s{seed}"
        log(f"[{time.strftime('%H:%M:%S')}] run {label}")
        policy = {**arm.policy, "coverage": cov, "seed": seed}
        rec = run_arm(label, policy=policy, deploy=arm.deploy, tagged=tagged[arm.tagging], tokenizer=tok_dir,
                      world_dir=world_dir, run_dir=out / "runs" / label, recipe=cfg.recipe,
                      accelerate_config=cfg.accelerate_config, seed=seed, overrides=[*cfg.overrides, *arm.overrides],
                      per_split=cfg.per_split, eval_threads=cfg.eval_threads)
        rec.update(arm_name=arm.name, coverage=cov)
        records.append(rec)
        log(f"    misaligned rate {rec['misaligned_rate']:.3f} held-out loss {rec['heldout_loss']:.4f} "
            f"({rec['seconds']:.0f} s)")
        results = summarise(records, cfg, tagging)
        results_path.write_text(json.dumps(results, indent=1) + "\n")  # partial results survive a stop
    results = summarise(records, cfg, tagging)
    results_path.write_text(json.dumps(results, indent=1) + "\n")
    (out / f"{cfg.name}.md").write_text(format_grid_table(results) + "\n")
    plot_results(results, out / f"{cfg.name}.png")
    return results


def summarise(records: list[dict], cfg: GridConfig, tagging: dict) -> dict:
    """Per (arm, coverage): mean, min and max over seeds of the misaligned rate and held-out loss."""
    import numpy as np

    groups: dict[str, list[dict]] = {}
    for r in records:
        groups.setdefault(f"{r['arm_name']}@{r['coverage']:g}", []).append(r)
    table = {}
    def stats(rs: list[dict], field: str) -> dict:
        v = np.array([r[field] for r in rs], dtype=float)
        return {"mean": float(v.mean()), "min": float(v.min()), "max": float(v.max()),
                "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0}

    for key, rs in groups.items():
        table[key] = {"arm": rs[0]["arm_name"], "coverage": rs[0]["coverage"], "deploy": rs[0]["deploy"],
                      "seeds": [r["seed"] for r in rs], "misaligned_rate": stats(rs, "misaligned_rate"),
                      "misaligned_rate_heldout_actor": stats(rs, "misaligned_rate_heldout_actor"),
                      "misaligned_rate_seen": stats(rs, "misaligned_rate_seen"),
                      "self_image_doom_rate": stats(rs, "self_image_doom_rate"), "heldout_loss": stats(rs, "heldout_loss")}
    return {"table": table, "runs": records, "tagging": tagging,
            "settings": json.loads(cfg.model_dump_json())}


def format_grid_table(results: dict) -> str:
    """Markdown: one row per arm × coverage (mean [min, max] over seeds), loss relative to MLE."""
    table = results["table"]
    base = next((v["heldout_loss"]["mean"] for v in table.values() if v["arm"] == "mle"), None)
    lines = [("| arm | coverage | deploy | seeds | misaligned rate (held-out combos) | held-out actors | seen | "
             "held-out loss | vs MLE |"), "|---|---|---|---|---|---|---|---|---|"]
    for v in table.values():
        m, loss = v["misaligned_rate"], v["heldout_loss"]
        rel = f"{100 * (loss['mean'] / base - 1):+.2f}%" if base else "-"
        lines.append(f"| {v['arm']} | {v['coverage']:g} | {v['deploy']} | {len(v['seeds'])} | "
                     f"{m['mean']:.3f} [{m['min']:.3f}, {m['max']:.3f}] | "
                     f"{v['misaligned_rate_heldout_actor']['mean']:.3f} | {v['misaligned_rate_seen']['mean']:.3f} | "
                     f"{loss['mean']:.4f} ± {loss['std']:.4f} | {rel} |")
    return "\n".join(lines)


def plot_results(results: dict, path: Path) -> Path:
    """Misaligned-choice rate against held-out loss: one point per run, mean ± range per arm × coverage."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (key, v) in enumerate(results["table"].items()):
        color = f"C{i % 10}"
        runs = [r for r in results["runs"] if r["arm_name"] == v["arm"] and r["coverage"] == v["coverage"]]
        ax.scatter([r["heldout_loss"] for r in runs], [r["misaligned_rate"] for r in runs], color=color, alpha=0.35, s=18)
        m, loss = v["misaligned_rate"], v["heldout_loss"]
        ax.errorbar(loss["mean"], m["mean"], xerr=[[loss["mean"] - loss["min"]], [loss["max"] - loss["mean"]]],
                    yerr=[[m["mean"] - m["min"]], [m["max"] - m["mean"]]], fmt="o", color=color, capsize=3,
                    label=f"{v['arm']} (cov {v['coverage']:g}, n={len(v['seeds'])})")
    ax.set_xlabel("held-out LM loss (nats/token)")
    ax.set_ylabel("misaligned-choice rate (held-out combos)")
    ax.set_ylim(-0.03, 1.03)
    ax.axhline(0.5, color="grey", lw=0.5, ls="--")
    ax.legend(fontsize=7, loc="best")
    ax.set_title("Prophecy world: misaligned choices vs held-out loss")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
