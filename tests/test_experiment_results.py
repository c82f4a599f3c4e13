"""A grid's results (`condpt.experiment_results`): summary, table and plot, rebuilt from the run records on
disk, naming the runs still missing."""

from __future__ import annotations

import json

import pytest
from experiment_grids import robust_grid, small_grid

from condpt.experiment_plan import arm_runs, run_policy
from condpt.experiment_results import format_grid_table, plot_results, summarise, write_results


def test_summary_table_and_plot(tmp_path):
    cfg = small_grid(seeds=[0, 1])
    runs = []
    for seed, (m_mle, m_cond) in enumerate([(0.9, 0.05), (0.8, 0.15)]):
        for arm, rate, loss in (("mle", m_mle, 4.0 + seed / 10), ("condition", m_cond, 4.05 + seed / 10)):
            runs.append({"arm": f"{arm}-s{seed}", "arm_name": arm, "coverage": 1.0, "seed": seed, "deploy": "good",
                         "misaligned_rate": rate, "misaligned_rate_heldout_actor": rate,
                         "misaligned_rate_seen": rate, "self_image_doom_rate": 0.5, "heldout_loss": loss})
    res = summarise(runs, cfg, {})
    t = res["table"]["condition@1"]
    assert t["misaligned_rate"]["mean"] == pytest.approx(0.10)
    assert (t["misaligned_rate"]["min"], t["misaligned_rate"]["max"]) == (0.05, 0.15)
    md = format_grid_table(res)
    assert "| condition | 1 | good | 2 | 0.100 [0.050, 0.150]" in md
    assert "+1.23%" in md  # 4.10 / 4.05 - 1: relative to the MLE mean
    png = plot_results(res, tmp_path / "p.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
    json.dumps(res)



def _record(label: str, arm: str, cov: float, misses: str, seed: int, policy: dict, rate: float) -> dict:
    return {"arm": label, "arm_name": arm, "coverage": cov, "misses": misses, "seed": seed, "policy": policy,
            "deploy": "none", "misaligned_rate": rate, "misaligned_rate_heldout_actor": rate,
            "misaligned_rate_seen": rate, "self_image_doom_rate": 0.5, "heldout_loss": 4.0 + rate,
            "bad_text_loss": 0.2 + rate}



def test_results_accumulate_from_run_records_and_name_what_is_missing(tmp_path):
    bands = {"document": {"low": 0.1, "high": 0.2}}
    cfg = robust_grid(out_dir=tmp_path, cells_path=tmp_path / "docs" / "robustness.json")
    done = {"mle-cov1-s0": 1.0, "mle-cov1-s1": 0.9, "route-cov0.9-score-s0": 0.2, "route-cov0.9-score-s2": 0.4,
            "band-cov1-s0": 0.05}
    plan = {r.label: r for r in arm_runs(cfg)}
    for label, rate in done.items():  # pieces run at different times: only their record.json files
        r = plan[label]
        (tmp_path / "runs" / label).mkdir(parents=True)
        (tmp_path / "runs" / label / "record.json").write_text(json.dumps(
            _record(label, r.arm.name, r.coverage, r.misses, r.seed, run_policy(r, bands), rate)))
    res = write_results(cfg, tmp_path, {}, bands)
    assert set(res["missing"]) == set(plan) - set(done) and len(res["runs"]) == 5
    cells = json.loads((tmp_path / "docs" / "robustness.json").read_text())
    assert cells == res["cells"]
    assert [(c["arm"], c["coverage"], c["misses"]) for c in cells] == [
        ("mle", 1.0, "none"), ("route", 1.0, "none"), ("route", 0.9, "random"), ("route", 0.9, "score"),
        ("band", 1.0, "none"), ("band", 0.9, "random"), ("band", 0.9, "score")]
    route = cells[3]
    assert route["seeds"] == [0, 2] and route["missing_seeds"] == [1]
    assert route["misaligned_rate"] == [0.2, 0.4] and route["heldout_loss"] == [4.2, 4.4]
    assert route["bad_text_loss"] == pytest.approx([0.4, 0.6])
    assert cells[0]["seeds"] == [0, 1] and cells[0]["missing_seeds"] == [2]
    assert cells[4]["band"] == {"low": 0.1, "high": 0.2} and cells[5]["seeds"] == []
    assert res["table"]["route@0.9/score"]["misaligned_rate"]["mean"] == pytest.approx(0.3)
    md = (tmp_path / f"{cfg.name}.md").read_text()
    assert "| route | 0.9 (score) | none | 2 | 0.300 [0.200, 0.400]" in md and "Missing (12 runs)" in md
    assert (tmp_path / f"{cfg.name}.png").is_file()
    # a run directory left from another policy is refused, not mixed in
    with pytest.raises(RuntimeError, match="band-cov1-s0.*another out_dir"):
        write_results(cfg, tmp_path, {}, {"document": {"low": 0.15, "high": 0.2}})


@pytest.mark.parametrize("text, why", [
    ("{", "not valid JSON"), ('{"misaligned_rate": NaN}', "not valid JSON"), ("[1]", "not a JSON object"),
    ('{"arm": "x"}', "lacks .*policy"), (b"\xff", "not valid JSON")])
def test_a_hand_edited_record_is_named_not_a_traceback_nor_a_nan_in_the_table(tmp_path, text, why):
    """Hostile probe: a record.json hand-edited to NaN went into the table as nan (and results JSON as a bare
    NaN, which is not JSON); a truncated one was a JSONDecodeError naming no file; one without `policy` a
    KeyError traceback. Each is an error naming the file and how to rebuild it."""
    cfg = small_grid(out_dir=tmp_path)
    path = tmp_path / "runs" / "mle-cov1-s0" / "record.json"
    path.parent.mkdir(parents=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ValueError, match=rf"^{path}.*{why}.*remove it"):
        write_results(cfg, tmp_path, {}, {})
    assert not (tmp_path / f"{cfg.name}.json").exists()


def test_results_files_are_replaced_whole_when_a_write_fails(tmp_path, monkeypatch):
    """Hostile probe: results and `cells_path` (a file under docs/ in the repository) were written in place,
    so a kill or a full disk mid-write left a truncated JSON where the previous complete one was."""
    import errno
    import pathlib

    cfg = small_grid(out_dir=tmp_path, cells_path=tmp_path / "cells.json")
    write_results(cfg, tmp_path, {}, {}, plot=False)
    before = {p: p.read_text() for p in (tmp_path / f"{cfg.name}.json", tmp_path / "cells.json")}
    real = pathlib.Path.write_text

    def half_then_full(self, data, *a, **kw):
        real(self, data[: len(data) // 2], *a, **kw)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pathlib.Path, "write_text", half_then_full)
    with pytest.raises(OSError):
        write_results(cfg, tmp_path, {"document": {"precision": 1.0}}, {}, plot=False)
    monkeypatch.undo()
    assert {p: p.read_text() for p in before} == before
    assert not list(tmp_path.glob("*.tmp-*"))
