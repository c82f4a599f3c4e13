"""The experiment grid: data-policy arms × label coverage × miss model × seeds on one prophecy world.

Each run is the real recipe (`accelerate launch ... -m condpt.recipe --config RECIPE key=value...`) in a
subprocess, then the prophecy suite on `OUTPUT_DIR/final`. Everything shared by the arms is built once:
the world, its tags (condpt's own cascade, never the generator's labels), and one tokenizer with the
control tokens, so every arm sees the same token ids and the held-out loss is comparable.

    out_dir/
      world/                    the generated world (train / heldout / hidden labels / scenarios)
      tagged-<granularity>/     `condpt tag` output the arms train on
      tagging.json              the tagger's precision/recall against the hidden labels
      calibration.json          the calibrated bands (`band: calibrated` arms), per tagging granularity
      tokenizer/                the shared tokenizer + condpt_tokens.json
      runs/<label>/             recipe output (final/, metrics.jsonl) + train.log, eval.json (the suite),
                                bad_text.json (loss on held-out bad-tagged text), record.json (the run's row)
      results-<grid>.json/.md/.png  (one set per grid file, so grids can share an out_dir)

A run's label is `<arm>-cov<c>-s<seed>`, or `<arm>-cov<c>-score-s<seed>` under score-based misses. The
results are rebuilt from the `record.json` files on disk after every run, so a grid run in pieces
(`only=`, or several invocations) accumulates into one summary, which names the runs still missing.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple, TypeVar

from pydantic import AfterValidator, BaseModel, Field, ValidationError, field_validator, model_validator

from condpt.configtypes import STRICT, FileName, PathField, Seed
from condpt.guidance import parse_guided
from condpt.recipe import config_path, is_shipped_name, launch_command
from condpt.world import WorldConfig, generate_world, tagging_agreement, write_world
from condpt.yamlfile import read_yaml

CALIBRATED = "calibrated"  # `band: calibrated` in an arm's policy: thresholds resolved at grid time


def shipped_or_path(value: Any, field: str) -> Any:
    """A grid's `recipe` or `accelerate_config` field (a pydantic "before" validator's body): a shipped config
    name or a path to an existing file, as a Path; anything else is left to the field's type check."""
    if isinstance(value, str | Path):
        try:
            path = config_path(value, "run" if field == "recipe" else "accelerate")
        except FileNotFoundError as e:
            raise ValueError(str(e)) from None
        if not path.is_file():
            raise ValueError(f"{path}: no such file")
        return path
    return value


def _override(item: str) -> str:
    from condpt.config import parse_override

    parse_override(item)  # its ConfigError (a ValueError) names the item
    return item


Override = Annotated[str, AfterValidator(_override)]
"""A recipe `key=value` override (the value is checked when the recipe loads it)."""


def check_policy(policy: dict[str, Any]) -> dict[str, Any]:
    """An arm's `data.policy` checked now as the recipe will check it (`band: calibrated` stands for the band
    the grid resolves later), so a typo fails at load and not after the world is generated and tagged. Kept
    as the mapping: it is merged into the recipe's policy and recorded with each run."""
    from condpt.inputs import stories_problems
    from condpt.policy import PolicyConfig

    placeholder = {"band": {"low": 0.0, "high": 1.0}} if policy.get("band") == CALIBRATED else {}
    try:
        cfg = PolicyConfig.model_validate({**policy, **placeholder})
    except ValidationError as e:
        raise ValueError(_field_errors(e)) from None
    # relative to the working directory, as the recipe reads it from the override
    has_stories = cfg.selfref is not None and cfg.selfref.stories_path is not None
    if has_stories and (problems := stories_problems(cfg.selfref)):
        raise ValueError(f"selfref.stories_path: {'; '.join(problems)}")
    return policy


class ArmConfig(BaseModel):
    """One data policy: `policy` is merged into the recipe's `data.policy` (`band: calibrated` is replaced
    by the band the grid's `calibration` resolves from the tagged world). An arm `trained_as` another
    evaluates that arm's trained models (same policy, tagging and overrides) under its own `deploy`: a
    deployment choice, such as guidance, is an arm of its own without training anything twice."""

    model_config = STRICT

    name: FileName
    policy: dict[str, Any] = Field(default_factory=dict)
    tagging: Literal["document", "sentence"] = "document"
    deploy: str | None = Field(None, description="none | good | self | guided[:scale] (condpt.guidance); "
                                                  "TAG+self: under that tag, addressed as 𐀤 (default: good for "
                                                  "mode condition, else none)")
    trained_as: str | None = Field(None, description="another arm whose trained runs this arm evaluates")
    overrides: list[Override] = Field(default_factory=list, description="extra recipe key=value overrides")

    @field_validator("policy")
    @classmethod
    def _policy(cls, value: dict[str, Any]) -> dict[str, Any]:
        return check_policy(value)

    @field_validator("deploy")
    @classmethod
    def _deploy(cls, value: str | None) -> str | None:
        from condpt.evaluate import split_self

        if value is None:
            return value
        base, _ = split_self(value)
        if base not in ("none", "good") and parse_guided(base) is None:
            raise ValueError(f"deploy {value!r}: none, good, self, guided[:scale], or good+self / guided[:scale]+self")
        return value

    @model_validator(mode="after")
    def _default_deploy(self) -> ArmConfig:
        if self.deploy is None:  # under the tag only where training put the tag in the text
            self.deploy = "good" if self.policy.get("mode", "condition") == "condition" else "none"
        return self

    @property
    def tag_free(self) -> bool:
        """An arm that ignores the tags (MLE without upweighting): coverage and misses cannot change it."""
        return self.policy.get("mode", "condition") == "mle" and self.policy.get("upweight_good", 1) == 1

    @property
    def calibrated(self) -> bool:
        return self.policy.get("band") == CALIBRATED


def check_trained_as(arms: Sequence[ArmConfig]) -> None:
    """Each arm `trained_as` another names an arm that trains, with the same policy, tagging and overrides
    (its models are that arm's): a grid's and the SmolLM2 evidence run's arms alike."""
    by_name = {a.name: a for a in arms}
    for arm in arms:
        if arm.trained_as is None:
            continue
        src = by_name.get(arm.trained_as)
        if src is None or src.trained_as is not None:
            raise ValueError(f"arm {arm.name!r}: trained_as {arm.trained_as!r} must name an arm that trains "
                             f"(one of {[a.name for a in arms if a.trained_as is None]})")
        if (arm.policy, arm.tagging, arm.overrides) != (src.policy, src.tagging, src.overrides):
            raise ValueError(f"arm {arm.name!r}: trained_as {src.name!r} needs the same policy, tagging and "
                             "overrides (its models are that arm's)")


def check_recipe(recipe: Path, overrides: list[str], arm: str) -> None:
    """The recipe with an arm's overrides holds values the run accepts (types, ranges, keys), checked before
    the world exists; its inputs (the tagged world, the tokenizer) are the grid's to make."""
    from condpt.config import ConfigError, read_config

    try:
        read_config(recipe, overrides)
    except ConfigError as e:
        raise ValueError(f"arm {arm!r}: {e}") from None


def check_deploy(arms: Sequence[ArmConfig]) -> None:
    """A deployment under a tag (good, guided, TAG+self) needs a model trained with tags in its text (mode
    condition); under any other policy the tag's embedding row never learned anything, and the numbers
    under it would measure noise. (`self`, no tag, is a fair baseline for any model.)"""
    from condpt.evaluate import split_self
    from condpt.layout import NO_CONDITION

    for arm in arms:
        base, _ = split_self(arm.deploy)
        mode = arm.policy.get("mode", "condition")
        if base != NO_CONDITION and mode != "condition":
            raise ValueError(f"arm {arm.name!r}: deploy {arm.deploy!r} uses a tag, which mode {mode!r} never "
                             "trains: deploy none or self")


class BandCalibration(BaseModel):
    """How `band: calibrated` arms get their thresholds (`condpt.calibrate.band_thresholds`): `low` at the
    recall target, `high` at the precision target, on the tagged world's stored scores against its hidden
    labels (misaligned stories are the positives) for `labelled_docs` training documents drawn by id hash —
    a hand-labelled sample's worth of labels, not the whole corpus's."""

    model_config = STRICT

    recall: float = Field(gt=0.0, le=1.0, description="band.low: at least this recall of bad documents")
    precision: float = Field(gt=0.0, le=1.0, description="band.high: the bad tag at least this precise")
    labelled_docs: int | None = Field(1000, ge=10, description="labelled documents to calibrate on (null: all)")


class TaggerSettings(BaseModel):
    """How condpt's cascade tags the world (a subset of `TagConfig`: the classifier and threshold)."""

    model_config = STRICT

    classifier: str = Field("none", description="cascade classifier spec: none (lexicon only: distinct phrases, "
                                                 "every negative scores 0), lexicon-density (graded: "
                                                 "condpt.tagging.density), default, fasttext-default, or a trained "
                                                 "classifier directory")
    threshold: float | None = Field(None, ge=0.0, le=1.0)

    @field_validator("classifier")
    @classmethod
    def _known(cls, value: str) -> str:
        """A name the cascade knows or a directory (checked now: tagging runs after the world is built)."""
        from condpt.tagging.classifiers import BUILT_IN
        from condpt.tagging.density import LexiconDensity

        if value not in ("none", LexiconDensity.name, *BUILT_IN) and not Path(value).is_dir():
            raise ValueError(f"{value!r}: no such directory, nor none, {LexiconDensity.name} or a built-in scorer "
                             f"({', '.join(BUILT_IN)})")
        return value


Coverage = Annotated[float, Field(ge=0.0, le=1.0)]


class GridConfig(BaseModel):
    """A whole experiment (YAML). Input paths in the YAML (recipe, accelerate config, world.gutenberg_path,
    a tagger classifier directory) are relative to the YAML file's directory; `out_dir`, an output, is relative
    to the working directory. `recipe` and `accelerate_config` may also name a shipped config (`demo`,
    `deepspeed-zero2-cpu`, ...: see `condpt.recipe`)."""

    model_config = STRICT

    name: FileName = Field("results", description="results file stem: OUT/NAME.json/.md/.png (from_yaml: the file's stem)")
    out_dir: PathField = Path("runs/grid")
    world: WorldConfig = Field(default_factory=WorldConfig)
    tagger: TaggerSettings = Field(default_factory=TaggerSettings)
    recipe: Path = Field("demo", validate_default=True, description="run config: a path or a shipped name")
    accelerate_config: Path = Field("deepspeed-zero2-cpu", validate_default=True,
                                    description="accelerate config: a path or a shipped name")
    overrides: list[Override] = Field(default_factory=list, description="recipe overrides for every run")
    vocab_size: int = Field(4096, ge=300)
    arms: list[ArmConfig] = Field(min_length=1)
    coverages: list[Coverage] = Field(default_factory=lambda: [1.0], min_length=1)
    misses: list[Literal["random", "score"]] = Field(
        default_factory=lambda: ["random"], min_length=1,
        description="miss models at coverage < 1 (policy.misses); at coverage 1 nothing is missed: one run")
    seeds: list[Seed] = Field(default_factory=lambda: [0], min_length=1)
    seeds_by_coverage: dict[Coverage, list[Seed]] = Field(
        default_factory=dict, description="seeds for a coverage instead of `seeds` (e.g. {1.0: [0]}); "
                                          "tag-free arms run once per seed of `seeds`")
    calibration: BandCalibration | None = Field(None, description="targets of the `band: calibrated` arms")
    cells_path: PathField | None = Field(None, description="also write the per-cell summary (a list, one object per "
                                                      "arm × coverage × miss model) here; relative to the "
                                                      "working directory, like out_dir")
    per_split: int | None = Field(60, ge=1, description="scenarios per split in evaluation (None: all)")
    eval_threads: int = Field(1, ge=1, description="torch threads for evaluation")

    @field_validator("recipe", "accelerate_config", mode="before")
    @classmethod
    def _shipped_or_path(cls, value: Any, info) -> Any:
        return shipped_or_path(value, info.field_name)

    @model_validator(mode="after")
    def _arms_fit(self) -> GridConfig:
        for field in ("coverages", "seeds", "misses"):  # a value twice would run (and count) its runs twice
            values = getattr(self, field)
            if twice := sorted({v for v in values if values.count(v) > 1}):
                raise ValueError(f"{field}: {twice} listed twice")
        names = [a.name for a in self.arms]
        if len(set(names)) != len(names):
            raise ValueError(f"arms: names must be distinct (run directories are named by them): {names}")
        if stray := sorted(set(self.seeds_by_coverage) - set(self.coverages)):
            raise ValueError(f"seeds_by_coverage: {stray} not among coverages {self.coverages}")
        for arm in self.arms:
            if grid_keys := sorted({"coverage", "misses", "seed"} & set(arm.policy)):
                raise ValueError(f"arm {arm.name!r}: policy sets {grid_keys}, which the grid sets per run "
                                 "(coverages, misses, seeds)")
            band = arm.policy.get("band")
            if isinstance(band, str) and band != CALIBRATED:
                raise ValueError(f"arm {arm.name!r}: policy.band is {band!r}: a mapping {{low, high}} or "
                                 f"{CALIBRATED!r}")
            if arm.calibrated and self.calibration is None:
                raise ValueError(f"arm {arm.name!r}: band: {CALIBRATED} needs the grid's calibration "
                                 "{recall, precision} targets")
        check_trained_as(self.arms)
        check_deploy(self.arms)
        for arm in self.arms:
            band = {arm.tagging: {"low": 0.0, "high": 1.0}}  # a calibrated band stands in as in check_policy
            check_recipe(self.recipe, [*policy_overrides(_policy(GridRun(arm, 1.0, "none", 0), band)),
                                       *self.overrides, *arm.overrides], arm.name)
        return self

    @classmethod
    def from_yaml(cls, path: str | Path) -> GridConfig:
        return config_from_yaml(cls, path, "grid config", f"results-{Path(path).stem}")


Config = TypeVar("Config", bound=BaseModel)


def config_from_yaml(cls: type[Config], path: str | Path, what: str, name: str,
                     resolve: Callable[[dict[str, Any], Path], None] | None = None) -> Config:
    """A run-set config (the grid, the evidence run) from the YAML mapping at `path`: its input paths made
    relative to the file's folder (`resolve`, default `_resolve_inputs`), `name` where the file sets none; errors
    name the file (`what`: what it should be) and the fields."""
    path = Path(path)
    raw = read_yaml(path, what) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping")
    (resolve or _resolve_inputs)(raw, path.resolve().parent)
    # a file name that is not UTF-8 still gives a name (its odd bytes as U+FFFD)
    raw.setdefault("name", name.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))
    try:
        return cls.model_validate(raw)
    except ValidationError as e:
        raise ValueError(f"{path}: {_field_errors(e)}") from e


def _field_errors(e: ValidationError) -> str:
    """`field.path: message; ...` (a model-level error: the message alone, which names its fields)."""
    return "; ".join(": ".join(filter(None, (".".join(map(str, err["loc"])), err["msg"].removeprefix("Value error, "))))
                     for err in e.errors())


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
    if (tagged / "report.json").is_file():
        _check_reuse(tagged, cfg)
    else:
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


def _check_reuse(tagged: Path, cfg: Any) -> None:
    """A tagged world is reused only if it was tagged by the classifier, at the threshold, the grid asks for:
    a grid whose tagger changed must not train on the old tags (nor report them under the new tagger's name)."""
    done = json.loads((tagged / "run.json").read_text(encoding="utf-8"))["config"]
    spec, threshold = done["classifier"]["spec"], done["threshold"]
    if (spec, threshold) != (cfg.classifier.spec, cfg.threshold):
        raise ValueError(f"{tagged}: tagged by classifier {spec!r} at threshold {threshold}, the grid asks for "
                         f"{cfg.classifier.spec!r} at {cfg.threshold}; remove {tagged} or use another out_dir")


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


def calibrate_band(world_dir: Path, tagged: Path, cal: BandCalibration) -> dict:
    """`band.low` / `band.high` (`condpt.calibrate.band_thresholds`) from the tagged world's stored document
    scores and the world's hidden labels (misaligned = 1), on `cal.labelled_docs` documents chosen by id
    hash (the same for every run); returns the thresholds and their figures."""
    from condpt.calibrate import band_thresholds, load_tagged
    from condpt.policy import unit_hash

    rows = load_tagged(tagged, ("id", "score"))
    with (world_dir / "labels.jsonl").open(encoding="utf-8") as f:
        truth = {lab["id"]: int(lab["label"] == "misaligned") for lab in map(json.loads, f)}
    ids = [i for i in rows["id"] if i in truth]
    if cal.labelled_docs is not None:
        ids = sorted(ids, key=lambda i: unit_hash("calibration", i))[:cal.labelled_docs]
    score = dict(zip(rows["id"], rows["score"]))
    band = band_thresholds([score[i] for i in ids], [truth[i] for i in ids],
                           recall=cal.recall, precision=cal.precision)
    return {**band, "labelled_docs": len(ids)}


def held_out_bad_texts(final: Path, tagged: Path, bad_role: str = "bad") -> list[str]:
    """The documents the recipe held out of this run (`data.heldout_fraction` of its `run_config.yaml`, by
    id hash: the same for every arm) that the grid's tagger tagged bad — as stored, before any policy."""
    import yaml

    from condpt.calibrate import load_tagged
    from condpt.sequences import is_heldout

    fraction = yaml.safe_load((final / "run_config.yaml").read_text(encoding="utf-8"))["data"]["heldout_fraction"]
    rows = load_tagged(tagged, ("id", "text", "tag"))
    return [t for i, t, tag in zip(rows["id"], rows["text"], rows["tag"])
            if tag == bad_role and is_heldout(str(i), fraction)]


def bad_text_loss(final: Path, tagged: Path) -> dict:
    """Held-out LM loss (nats/token, no condition: plain text, as the knowledge is used) of the exported
    model `final/` — for a route run the ablated model — on `held_out_bad_texts`."""
    from condpt.evaluate import heldout_loss
    from condpt.layout import load_run

    texts = held_out_bad_texts(final, tagged)
    if not texts:
        return {"loss": None, "tokens": 0, "docs": 0}
    run = load_run(final, device="cpu")
    res = heldout_loss(run.model, run.tokenizer, run.manifest, texts, "none")
    return {**res, "docs": len(texts)}


def run_arm(name: str, *, policy: dict[str, Any], deploy: str, tagged: Path, tokenizer: Path, world_dir: Path,
            run_dir: Path, recipe: Path, accelerate_config: Path, seed: int, overrides: Sequence[str] = (),
            per_split: int | None = 60, eval_threads: int = 1, train_dir: Path | None = None) -> dict:
    """Train one arm with the recipe into `train_dir` (default `run_dir`; skipped if its `final/` exists),
    evaluate it into `run_dir` (skipped if `eval.json` exists) and measure its loss on held-out bad text
    (skipped if `bad_text.json` exists); returns its record (also `record.json` is written by `run_grid`)."""
    from condpt.evaluate import evaluate

    final = (train_dir or run_dir) / "final"
    t0 = time.time()
    if not (final / "config.json").is_file():
        ovr = [f"output_dir={train_dir or run_dir}", f"seed={seed}", f"data.sources.0.path={tagged}",
               f"tokenizer.source={tokenizer}", "train.resume=never", *policy_overrides(policy), *overrides]
        launch_recipe(recipe, accelerate_config, ovr, (train_dir or run_dir) / "train.log")
    train_s = time.time() - t0
    eval_path, bad_path = run_dir / "eval.json", run_dir / "bad_text.json"
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(eval_threads)
    try:
        if eval_path.is_file():
            res = json.loads(eval_path.read_text())
        else:
            run_dir.mkdir(parents=True, exist_ok=True)
            res = evaluate(final, world_dir=world_dir, deploy=deploy, per_split=per_split)
            eval_path.write_text(json.dumps(res, indent=1) + "\n")
        if bad_path.is_file():
            bad = json.loads(bad_path.read_text())
        else:
            bad = bad_text_loss(final, tagged)
            bad_path.write_text(json.dumps(bad, indent=1) + "\n")
    finally:
        torch.set_num_threads(threads)
    return {"arm": name, "seed": seed, "policy": policy, "deploy": deploy, "train_seconds": round(train_s, 1),
            "seconds": round(time.time() - t0, 1), **res["summary"], "bad_text_loss": bad["loss"],
            "choices": res["choices"], "self_image": {c: v["doom_rate"] for c, v in res["self_image"].items()}}


# ------------------------------------------------------------------------------------------- grid


class GridRun(NamedTuple):
    """One cell's seed: `misses` is "none" where nothing is missed (coverage 1, or a tag-free arm)."""

    arm: ArmConfig
    coverage: float
    misses: str
    seed: int

    @property
    def label(self) -> str:
        return self._label(self.arm.name)

    @property
    def train_label(self) -> str:
        """The run directory whose `final/` this run evaluates (another arm's, for an arm `trained_as` it)."""
        return self._label(self.arm.trained_as or self.arm.name)

    def _label(self, name: str) -> str:
        return f"{name}-cov{self.coverage:g}-{self.misses}-s{self.seed}" if self.misses == "score" \
            else f"{name}-cov{self.coverage:g}-s{self.seed}"  # random: the name runs had before


def _arm_runs(cfg: GridConfig) -> list[GridRun]:
    """Every run of the grid, seed by seed: arms × coverage × miss model. A tag-free arm (MLE) runs once per
    seed of `seeds` (coverage and misses cannot change it); coverage 1 misses nothing, so it runs once
    whatever `misses` lists; a coverage's seeds are `seeds_by_coverage[c]` if given, else `seeds`."""
    by_cov = {c: cfg.seeds_by_coverage.get(c, cfg.seeds) for c in cfg.coverages}
    all_seeds = list(dict.fromkeys([*cfg.seeds, *(s for ss in by_cov.values() for s in ss)]))
    runs = []
    for seed in all_seeds:
        for arm in cfg.arms:
            if arm.tag_free:
                if seed in cfg.seeds:
                    runs.append(GridRun(arm, 1.0, "none", seed))
                continue
            for cov in cfg.coverages:
                if seed in by_cov[cov]:
                    runs.extend(GridRun(arm, cov, m, seed) for m in (cfg.misses if cov < 1 else ["none"]))
    return runs


ONLY_KEYS = ("arm", "coverage", "misses", "seed")


def parse_only(spec: str) -> dict[str, set[str]]:
    """`arm=route,seed=1` → {"arm": {"route"}, "seed": {"1"}}; a key given twice matches either value."""
    only: dict[str, set[str]] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        key, sep, value = part.partition("=")
        if not sep or key.strip() not in ONLY_KEYS or not value.strip():
            raise ValueError(f"--only {spec!r}: {part!r} is not KEY=VALUE with KEY one of {', '.join(ONLY_KEYS)}")
        only.setdefault(key.strip(), set()).add(value.strip())
    return only


def selected(run: GridRun, only: dict[str, set[str]] | None) -> bool:
    if not only:
        return True
    have = {"arm": run.arm.name, "coverage": run.coverage, "misses": run.misses, "seed": run.seed}
    for key, values in only.items():
        if key == "coverage":
            if not any(float(v) == run.coverage for v in values):
                return False
        elif str(have[key]) not in values:
            return False
    return True


def _policy(run: GridRun, bands: dict[str, dict]) -> dict[str, Any]:
    """The recipe's data.policy for a run: the arm's, with coverage, miss model, seed and a calibrated band."""
    policy = {**run.arm.policy, "coverage": run.coverage, "seed": run.seed}
    if run.misses == "score":
        policy["misses"] = "score"
    if run.arm.calibrated:
        policy["band"] = {"low": bands[run.arm.tagging]["low"], "high": bands[run.arm.tagging]["high"]}
    return policy


def collect_records(cfg: GridConfig, out: Path, bands: dict[str, dict]) -> tuple[list[dict], list[str]]:
    """The finished runs' records (`runs/<label>/record.json`) in plan order, and the labels still missing.
    A record trained under another policy than the grid's now is an error (its run directory is stale)."""
    records, missing = [], []
    for run in _arm_runs(cfg):
        path = out / "runs" / run.label / "record.json"
        if not path.is_file():
            missing.append(run.label)
            continue
        rec = json.loads(path.read_text())
        if rec["policy"] != _policy(run, bands):
            raise RuntimeError(f"{path}: trained under policy {rec['policy']}, but the grid now asks for "
                               f"{_policy(run, bands)}; remove {path.parent} or use another out_dir")
        records.append(rec)
    return records, missing


def run_grid(cfg: GridConfig, *, only: dict[str, set[str]] | None = None, log=print) -> dict:
    """Run (or resume) every arm × coverage × miss model × seed, or with `only` (`parse_only`) just the runs
    it selects; then write OUT/NAME.json/.md/.png (and `cells_path`) from every finished run on disk, so
    pieces run at different times accumulate. Returns the results."""
    plan = _arm_runs(cfg)
    todo = [r for r in plan if selected(r, only)]
    if not todo:
        values = {k: sorted({str(getattr(r, k) if k != "arm" else r.arm.name) for r in plan}) for k in ONLY_KEYS}
        raise ValueError(f"--only selects none of the grid's {len(plan)} runs; values: {values}")
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
    bands = {gran: calibrate_band(world_dir, tagged[gran], cfg.calibration)
             for gran in sorted({a.tagging for a in cfg.arms if a.calibrated})}
    for gran, band in bands.items():
        log(f"calibrated band ({gran}): low {band['low']:.4f} (recall {band['recall_at_low']:.3f}) high "
            f"{band['high']:.4f} (precision {band['precision_at_high']:.3f}), {band['band_fraction']:.3f} "
            f"of {band['labelled_docs']} labelled documents uncertain")
    if bands:
        (out / "calibration.json").write_text(json.dumps(bands, indent=1) + "\n")
    log(f"{len(todo)} of {len(plan)} runs selected")
    for run in todo:
        log(f"[{time.strftime('%H:%M:%S')}] run {run.label}")
        run_dir = out / "runs" / run.label
        rec = run_arm(run.label, policy=_policy(run, bands), deploy=run.arm.deploy, tagged=tagged[run.arm.tagging],
                      tokenizer=tok_dir, world_dir=world_dir, run_dir=run_dir, recipe=cfg.recipe,
                      accelerate_config=cfg.accelerate_config, seed=run.seed,
                      overrides=[*cfg.overrides, *run.arm.overrides], per_split=cfg.per_split,
                      eval_threads=cfg.eval_threads, train_dir=out / "runs" / run.train_label)
        rec.update(arm_name=run.arm.name, coverage=run.coverage, misses=run.misses)
        (run_dir / "record.json").write_text(json.dumps(rec, indent=1) + "\n")
        bad = "-" if rec["bad_text_loss"] is None else f"{rec['bad_text_loss']:.4f}"
        log(f"    misaligned rate {rec['misaligned_rate']:.3f} held-out loss {rec['heldout_loss']:.4f} "
            f"bad-text loss {bad} ({rec['seconds']:.0f} s)")
        write_results(cfg, out, tagging, bands, plot=False)  # partial results survive a stop
    results = write_results(cfg, out, tagging, bands)
    if results["missing"]:
        log(f"{len(results['missing'])} of {len(plan)} runs still missing: {', '.join(results['missing'])}")
    return results


def write_results(cfg: GridConfig, out: Path, tagging: dict, bands: dict[str, dict], *, plot: bool = True) -> dict:
    """OUT/NAME.json (and .md, .png with `plot`) and `cells_path` from every finished run on disk."""
    records, missing = collect_records(cfg, out, bands)
    results = summarise(records, cfg, tagging, missing=missing, calibration=bands)
    (out / f"{cfg.name}.json").write_text(json.dumps(results, indent=1) + "\n")
    if cfg.cells_path is not None:
        cells_path = Path(cfg.cells_path)
        cells_path.parent.mkdir(parents=True, exist_ok=True)
        cells_path.write_text(json.dumps(results["cells"], indent=1) + "\n")
    if plot and records:
        (out / f"{cfg.name}.md").write_text(format_grid_table(results) + "\n")
        plot_results(results, out / f"{cfg.name}.png")
    return results


def _misses(r: dict) -> str:
    """A record's miss model ("none" for records written before the grid had one, at coverage 1)."""
    return r.get("misses", "random" if r["coverage"] < 1 else "none")


def _cell_key(arm: str, coverage: float, misses: str) -> str:
    return f"{arm}@{coverage:g}" + ("" if misses == "none" else f"/{misses}")


def cells(records: list[dict], cfg: GridConfig) -> list[dict]:
    """One object per arm × coverage × miss model of the plan, in plan order: the seeds finished and, per
    seed, the misaligned-choice rate on held-out combinations under the arm's deploy condition, the held-out
    loss under it and the loss on held-out bad text (`bad_text_loss`); `missing_seeds` lists the rest."""
    by_label = {r["arm"]: r for r in records}
    out: dict[str, dict] = {}
    for run in _arm_runs(cfg):
        cell = out.setdefault(_cell_key(run.arm.name, run.coverage, run.misses), {
            "arm": run.arm.name, "coverage": run.coverage, "misses": run.misses, "deploy": run.arm.deploy,
            "seeds": [], "misaligned_rate": [], "heldout_loss": [], "bad_text_loss": [], "missing_seeds": []})
        rec = by_label.get(run.label)
        if rec is None:
            cell["missing_seeds"].append(run.seed)
            continue
        cell["seeds"].append(run.seed)
        for field in ("misaligned_rate", "heldout_loss", "bad_text_loss"):
            cell[field].append(rec.get(field))
        if "band" in rec["policy"]:
            cell["band"] = rec["policy"]["band"]
    return list(out.values())


def summarise(records: list[dict], cfg: GridConfig, tagging: dict, *, missing: Sequence[str] = (),
              calibration: dict | None = None) -> dict:
    """Per arm × coverage × miss model: mean, min and max over seeds of the misaligned rate and the losses;
    `cells` (`cells`), the runs still `missing`, and the calibrated bands."""
    import numpy as np

    groups: dict[str, list[dict]] = {}
    for r in records:
        groups.setdefault(_cell_key(r["arm_name"], r["coverage"], _misses(r)), []).append(r)
    table = {}
    def stats(rs: list[dict], field: str) -> dict | None:
        if any(r.get(field) is None for r in rs):
            return None
        v = np.array([r[field] for r in rs], dtype=float)
        return {"mean": float(v.mean()), "min": float(v.min()), "max": float(v.max()),
                "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0}

    for key, rs in groups.items():
        table[key] = {"arm": rs[0]["arm_name"], "coverage": rs[0]["coverage"], "misses": _misses(rs[0]),
                      "deploy": rs[0]["deploy"], "seeds": [r["seed"] for r in rs],
                      "misaligned_rate": stats(rs, "misaligned_rate"),
                      "misaligned_rate_heldout_actor": stats(rs, "misaligned_rate_heldout_actor"),
                      "misaligned_rate_seen": stats(rs, "misaligned_rate_seen"),
                      "self_image_doom_rate": stats(rs, "self_image_doom_rate"), "heldout_loss": stats(rs, "heldout_loss"),
                      "bad_text_loss": stats(rs, "bad_text_loss")}
    return {"table": table, "cells": cells(records, cfg), "missing": list(missing), "runs": records,
            "tagging": tagging, "calibration": calibration or {}, "settings": json.loads(cfg.model_dump_json())}


def format_grid_table(results: dict) -> str:
    """Markdown: one row per arm × coverage × miss model (mean [min, max] over seeds), loss relative to MLE;
    the runs still missing, if any, below."""
    table = results["table"]
    base = next((v["heldout_loss"]["mean"] for v in table.values() if v["arm"] == "mle"), None)
    lines = [("| arm | coverage | deploy | seeds | misaligned rate (held-out combos) | held-out actors | seen | "
             "held-out loss | vs MLE | bad-text loss |"), "|---|---|---|---|---|---|---|---|---|---|"]
    for v in table.values():
        m, loss, bad = v["misaligned_rate"], v["heldout_loss"], v.get("bad_text_loss")
        rel = f"{100 * (loss['mean'] / base - 1):+.2f}%" if base else "-"
        misses = v.get("misses", "none")
        cov = f"{v['coverage']:g}" + ("" if misses == "none" else f" ({misses})")
        lines.append(f"| {v['arm']} | {cov} | {v['deploy']} | {len(v['seeds'])} | "
                     f"{m['mean']:.3f} [{m['min']:.3f}, {m['max']:.3f}] | "
                     f"{v['misaligned_rate_heldout_actor']['mean']:.3f} | {v['misaligned_rate_seen']['mean']:.3f} | "
                     f"{loss['mean']:.4f} ± {loss['std']:.4f} | {rel} | "
                     f"{'-' if bad is None else format(bad['mean'], '.4f')} |")
    if results.get("missing"):
        lines += ["", f"Missing ({len(results['missing'])} runs): {', '.join(results['missing'])}"]
    return "\n".join(lines)


def plot_results(results: dict, path: Path) -> Path:
    """Misaligned-choice rate against held-out loss: one point per run, mean ± range per arm × coverage ×
    miss model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (key, v) in enumerate(results["table"].items()):
        color = f"C{i % 10}"
        runs = [r for r in results["runs"] if _cell_key(r["arm_name"], r["coverage"], _misses(r)) == key]
        ax.scatter([r["heldout_loss"] for r in runs], [r["misaligned_rate"] for r in runs], color=color, alpha=0.35, s=18)
        m, loss = v["misaligned_rate"], v["heldout_loss"]
        ax.errorbar(loss["mean"], m["mean"], xerr=[[loss["mean"] - loss["min"]], [loss["max"] - loss["mean"]]],
                    yerr=[[m["mean"] - m["min"]], [m["max"] - m["mean"]]], fmt="o", color=color, capsize=3,
                    label=f"{v['arm']} (cov {v['coverage']:g}"
                          f"{'' if v.get('misses', 'none') == 'none' else ', ' + v['misses']}, n={len(v['seeds'])})")
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
