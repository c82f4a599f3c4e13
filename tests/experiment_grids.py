"""Grid configs the experiment tests share (tests/test_experiment*.py)."""

from __future__ import annotations

from condpt.experiment_config import GridConfig


def small_grid(**kw) -> GridConfig:
    return GridConfig(arms=[{"name": "mle", "policy": {"mode": "mle"}, "deploy": "none"},
                            {"name": "condition", "policy": {"mode": "condition"}}], **kw)


def robust_grid(**kw) -> GridConfig:
    """The robustness grid's shape: MLE, route and a calibrated band; misses random and score, three seeds,
    coverage 1 under seed 0 only."""
    kw.setdefault("calibration", {"recall": 0.9, "precision": 0.9})
    return GridConfig(arms=[{"name": "mle", "policy": {"mode": "mle"}, "deploy": "none"},
                            {"name": "route", "policy": {"mode": "route"}, "deploy": "none"},
                            {"name": "band", "policy": {"mode": "condition", "band": "calibrated"}}],
                      coverages=[1.0, 0.9], misses=["random", "score"], seeds=[0, 1, 2],
                      seeds_by_coverage={1.0: [0]}, **kw)
