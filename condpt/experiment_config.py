"""An experiment grid's configuration (one YAML: `GridConfig`, its arms `ArmConfig`) and its validation.

Everything a grid file can get wrong fails at load, before the world is generated and tagged: each arm's
policy as the recipe will check it, each arm's recipe with its overrides, deploy conditions that need a tag
the policy never trains, arms `trained_as` others. Input paths in the YAML are relative to its folder.
`config_from_yaml` and the arm pieces serve the SmolLM2 evidence run's config too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, Field, ValidationError, field_validator, model_validator

from condpt.configtypes import STRICT, FileName, PathField, Seed
from condpt.experiment_plan import GridRun, arm_runs, policy_overrides, run_policy
from condpt.guidance import parse_guided
from condpt.shipped import config_path, is_shipped_name
from condpt.world import WorldConfig
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


# What a grid (or the evidence run) sets for each run: an override of it would make every run the same one.
PER_RUN = ("output_dir", "seed", "data.sources", "tokenizer.source", "train.resume", "data.policy")


def _override(item: str) -> str:
    from condpt.config import parse_override

    parse_override(item)  # its ConfigError (a ValueError) names the item
    key = item.partition("=")[0].strip()
    if any(key == k or key.startswith(k + ".") for k in PER_RUN):
        raise ValueError(f"override {key!r}: the grid sets it for each run ({', '.join(PER_RUN)}); an arm's "
                         "policy goes in its `policy`")
    return item


Override = Annotated[str, AfterValidator(_override)]
"""A recipe `key=value` override (the value is checked when the recipe loads it)."""


def _distinct_keys(items: list[str]) -> list[str]:
    """One list sets a key once: the last of two would win without a word (an arm's list may still override
    the grid's: that is what it is for)."""
    by_key: dict[str, list[str]] = {}
    for item in items:
        by_key.setdefault(item.partition("=")[0].strip(), []).append(item.strip())
    if twice := {k: v for k, v in by_key.items() if len(v) > 1}:
        raise ValueError("; ".join(f"{k} is set twice ({', '.join(v)})" for k, v in twice.items()))
    return items


Overrides = Annotated[list[Override], AfterValidator(_distinct_keys)]


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
    overrides: Overrides = Field(default_factory=list, description="extra recipe key=value overrides")

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


def case_collisions(names: Sequence[str]) -> list[str]:
    """The names that equal another but for case ("a", "A"), sorted."""
    folded = [n.casefold() for n in names]
    return sorted(n for n, f in zip(names, folded, strict=True) if folded.count(f) > 1)


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
    from condpt.routing import resolve_layers

    try:
        cfg = read_config(recipe, overrides)
    except ConfigError as e:
        raise ValueError(f"arm {arm!r}: {e}") from None
    route, tiny = cfg.data.policy.route, cfg.model.tiny_spec()
    if route is not None and route.layers is not None and tiny is not None:  # else the run's start checks it
        try:
            resolve_layers(route.layers, tiny.n_layer)
        except ValueError as e:
            raise ValueError(f"arm {arm!r}: {e}") from None


def check_roles(arm: ArmConfig) -> None:
    """The roles an arm writes into its rows (modes condition and route) are tags of the grid's tokenizer
    (`prepare_tokenizer`: the default control tokens), checked before the world is built and tagged."""
    from tokenizer_ext import ControlTokens

    if arm.policy.get("mode", "condition") not in ("condition", "route"):
        return
    tags = [t.role for t in ControlTokens().tags]
    band = arm.policy.get("band")
    roles = {"policy.good_role": arm.policy.get("good_role", "good"), "policy.bad_role": arm.policy.get("bad_role", "bad"),
             "policy.band.uncertain_role": band.get("uncertain_role") if isinstance(band, dict) else None}
    for field, role in roles.items():
        if role is not None and role not in tags:
            raise ValueError(f"arm {arm.name!r}: {field}: {role!r} has no control token in the grid's tokenizer "
                             f"(its tags: {', '.join(tags)})")


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

NAME_MAX = 255  # bytes in a file name (Linux, macOS)
MAX_RUNS = 10_000  # a typo in a list (a range of seeds) must not queue years of training: 100x the largest grid


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
    overrides: Overrides = Field(default_factory=list, description="recipe overrides for every run")
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
        # A world `condpt world` may write, but a grid cannot measure anything on:
        if self.world.n_ai_docs == 0:
            raise ValueError("world.n_ai_docs: 0 makes no misaligned stories: no policy has anything to act on")
        if self.world.n_heldout == 0:
            raise ValueError("world.n_heldout: 0 leaves no held-out text: every run's held-out loss would be NaN")
        for field in ("coverages", "seeds", "misses"):  # a value twice would run (and count) its runs twice
            values = getattr(self, field)
            if twice := sorted({v for v in values if values.count(v) > 1}):
                raise ValueError(f"{field}: {twice} listed twice")
        names = [a.name for a in self.arms]
        if len(set(names)) != len(names):
            raise ValueError(f"arms: names must be distinct (run directories are named by them): {names}")
        if same := case_collisions(names):
            raise ValueError(f"arms: names must be distinct regardless of case (run directories are named by "
                             f"them, one directory on a case-insensitive filesystem): {same}")
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
        labels = {}  # a run's directory is named by its label: coverages that format alike would share one
        for cov in self.coverages:
            if (label := f"cov{cov:g}") in labels:
                raise ValueError(f"coverages: {labels[label]} and {cov} both label their runs {label} (one run "
                                 "directory): make them differ in the first 6 significant digits")
            labels[label] = cov
        runs = arm_runs(self)
        if not (n_runs := len(runs)):
            raise ValueError("the grid makes no runs (every coverage's seeds are empty in seeds_by_coverage): "
                             "give its coverages seeds")
        if n_runs > MAX_RUNS:
            raise ValueError(f"the grid makes {n_runs:,} runs (arms × coverages × misses × seeds), minutes of "
                             f"training each; at most {MAX_RUNS:,}: split it into grids sharing an out_dir")
        # Found here, not when the world is built and tagged and the run's directory cannot be made:
        if (size := len(f"{self.name}.json".encode())) > NAME_MAX:
            raise ValueError(f"name: {self.name}.json is {size} bytes, more than a file name's {NAME_MAX}")
        for run in runs:
            if (size := len(run.label.encode())) > NAME_MAX:
                raise ValueError(f"arm {run.arm.name!r}: its run directory {run.label!r} is {size} bytes, more than "
                                 f"a file name's {NAME_MAX}: shorten the arm's name")
        check_trained_as(self.arms)
        check_deploy(self.arms)
        for arm in self.arms:
            check_roles(arm)
        for arm in self.arms:
            band = {arm.tagging: {"low": 0.0, "high": 1.0}}  # a calibrated band stands in as in check_policy
            check_recipe(self.recipe, [*policy_overrides(run_policy(GridRun(arm, 1.0, "none", 0), band)),
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
