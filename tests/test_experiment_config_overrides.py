"""Recipe overrides of a grid (or of one arm) cannot set what the grid sets for each run: with
`overrides: [output_dir=X]` every arm trained into X, and `data.policy.mode=mle` made every arm the same MLE run
under its arm's name (the arm's policy belongs in `policy`)."""

from __future__ import annotations

import pytest

from condpt.experiment_config import GridConfig


@pytest.mark.parametrize("override", ["output_dir=/tmp/one", "seed=3", "data.sources.0.path=x.jsonl",
                                      "data.sources=[{path: x.jsonl}]", "tokenizer.source=gpt2-bpe",
                                      "train.resume=auto", "data.policy.mode=mle", "data.policy={mode: mle}"])
@pytest.mark.parametrize("where", ["grid", "arm"])
def test_an_override_of_what_the_grid_sets_per_run_is_refused(override, where):
    arm = {"name": "f", "policy": {"mode": "filter"}, "deploy": "none"}
    raw = ({"overrides": [override], "arms": [arm]} if where == "grid"
           else {"arms": [{**arm, "overrides": [override]}]})
    key = override.partition("=")[0]
    with pytest.raises(ValueError, match=f"override {key!r}: the grid sets it for each run"):
        GridConfig.model_validate(raw)


def test_other_overrides_are_kept():
    cfg = GridConfig.model_validate({"overrides": ["train.max_steps=3", "data.heldout_fraction=0.1"],
                                     "arms": [{"name": "f", "policy": {"mode": "filter"}, "deploy": "none",
                                               "overrides": ["optim.lr=1e-4"]}]})
    assert cfg.overrides == ["train.max_steps=3", "data.heldout_fraction=0.1"]
