"""The runs a grid config makes (arms × coverage × miss model × seeds), each one's label and recipe policy,
and the `--only KEY=VALUE,...` selection of some of them."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:  # annotations only: the config module checks its arms' recipes with this plan
    from condpt.experiment_config import ArmConfig, GridConfig


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


def arm_runs(cfg: GridConfig) -> list[GridRun]:
    """Every run of the grid, seed by seed: arms × coverage × miss model. A tag-free arm (MLE) runs once per
    seed of `seeds` (coverage and misses cannot change it); coverage 1 misses nothing, so it runs once
    whatever `misses` lists; a coverage's seeds are `seeds_by_coverage[c]` if given, else `seeds`."""
    by_cov = {c: set(cfg.seeds_by_coverage.get(c, cfg.seeds)) for c in cfg.coverages}
    grid_seeds = set(cfg.seeds)
    all_seeds = list(dict.fromkeys([*cfg.seeds, *(s for c in cfg.coverages
                                                  for s in cfg.seeds_by_coverage.get(c, cfg.seeds))]))
    runs = []
    for seed in all_seeds:
        for arm in cfg.arms:
            if arm.tag_free:
                if seed in grid_seeds:
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
        if key.strip() == "coverage" and not _is_coverage(value):
            raise ValueError(f"--only {spec!r}: coverage {value.strip()!r} is not a number in [0, 1]")
        only.setdefault(key.strip(), set()).add(value.strip())
    if not only:  # an empty --only must not mean "everything": a whole grid is hours of training
        raise ValueError(f"--only {spec!r} names no run: give KEY=VALUE pairs ({', '.join(ONLY_KEYS)})")
    return only


def _is_coverage(value: str) -> bool:
    try:
        return 0 <= float(value) <= 1  # the grid's own range (coverage 0: no bad document seen)
    except ValueError:
        return False


def _only_value(run: GridRun, key: str) -> str:
    return run.arm.name if key == "arm" else str(getattr(run, key))


def check_only(plan: list[GridRun], only: dict[str, set[str]]) -> None:
    """Each `--only` value matches some run of the grid (a typo among values of a key given twice, or a seed
    the grid lacks, would otherwise be dropped without a word), else an error naming the value, the grid's
    values for that key and the nearest one."""
    import difflib

    for key, values in only.items():
        for value in sorted(values):
            if any(selected(r, {key: {value}}) for r in plan):
                continue
            have = sorted({_only_value(r, key) for r in plan})
            near = difflib.get_close_matches(value, have, n=1)
            hint = f": did you mean {near[0]!r}?" if near else ""
            raise ValueError(f"--only: {key} {value!r} matches no run of the grid{hint} (its {key} values: "
                             f"{', '.join(have)})")


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


def run_policy(run: GridRun, bands: dict[str, dict]) -> dict[str, Any]:
    """The recipe's data.policy for a run: the arm's, with coverage, miss model, seed and a calibrated band."""
    policy = {**run.arm.policy, "coverage": run.coverage, "seed": run.seed}
    if run.misses == "score":
        policy["misses"] = "score"
    if run.arm.calibrated:
        policy["band"] = {"low": bands[run.arm.tagging]["low"], "high": bands[run.arm.tagging]["high"]}
    return policy


def policy_overrides(policy: dict[str, Any]) -> list[str]:
    """`data.policy.KEY=VALUE` overrides (values as JSON, which the recipe parses as YAML)."""
    return [f"data.policy.{k}={json.dumps(v)}" for k, v in policy.items()]
