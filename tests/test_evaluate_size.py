"""How much `condpt eval` scores is one documented choice, printed and recorded: `--per-split N` (the scenarios,
sampled with the world's seed, the same for every model) and `--heldout-max-tokens N` (the held-out LM-loss
text). The full default world is 1,008 scenarios (9.5 min for SmolLM2 on CPU), and nothing said so or
recorded the cap that was used."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from condpt.evaluate import evaluate


def _eval(root, *args):
    import condpt.cli.evidence  # noqa: F401  (registers the eval command)
    from condpt.cli import app

    return CliRunner().invoke(app, ["eval", str(root / "m"), "--world", str(root / "world"), "--deploy", "none",
                                    "--out", str(root / "eval.json"), *args])


def test_the_caps_used_are_printed_and_recorded(tiny_run):
    res = _eval(tiny_run, "--per-split", "2", "--heldout-max-tokens", "40")
    assert res.exit_code == 0, res.output
    out = json.loads((tiny_run / "eval.json").read_text())
    assert out["sizes"]["per_split"] == 2 and out["sizes"]["heldout_max_tokens"] == 40
    assert set(out["sizes"]["scenarios"].values()) == {2}
    assert all(v["tokens"] == 40 for v in out["heldout_loss"].values())
    assert "at most 2 scenarios per split" in res.stdout and f"seed {out['world']['seed']}" in res.stdout
    assert f"{out['heldout_loss']['none']['tokens']} tokens" in res.stdout


def test_the_same_scenarios_for_every_run_and_all_by_default(tiny_run):
    a = evaluate(tiny_run / "m", world_dir=tiny_run / "world", per_split=3, heldout_max_tokens=40)
    b = evaluate(tiny_run / "m", world_dir=tiny_run / "world", per_split=3, heldout_max_tokens=40)
    assert a["choices"] == b["choices"] and a["heldout_loss"] == b["heldout_loss"]
    full = evaluate(tiny_run / "m", world_dir=tiny_run / "world", heldout_max_tokens=40)
    assert full["sizes"]["per_split"] is None and min(full["sizes"]["scenarios"].values()) > 3


@pytest.mark.parametrize("args", [["--heldout-max-tokens", "0"], ["--per-split", "0"]])
def test_a_cap_below_one_is_refused(tiny_run, args):
    res = _eval(tiny_run, *args)
    assert res.exit_code == 2 and args[0] in res.output and "Traceback" not in res.output, res.output
