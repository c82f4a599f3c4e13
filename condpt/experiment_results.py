"""A grid's results, rebuilt from the finished runs' `record.json` files on disk: OUT/NAME.json (the summary
per arm × coverage × miss model, the per-cell lists, the runs still missing), .md (the table) and .png (the plot),
and the grid's `cells_path`."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from condpt.experiment_config import GridConfig
from condpt.experiment_plan import arm_runs, run_policy


def write_text(path: Path, text: str) -> None:
    """`path` replaced whole or left as it was (a temporary file beside it, renamed): a kill or a full disk
    mid-write must not leave a truncated file that a re-run (or a reader of the results) takes as complete."""
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, value: Any) -> None:
    write_text(path, json.dumps(value, indent=1) + "\n")


# What the summary reads of each record (`experiment.run_arm`'s return, plus run_grid's arm_name/coverage/misses).
RECORD_KEYS = ("arm", "arm_name", "coverage", "seed", "policy", "deploy", "misaligned_rate",
               "misaligned_rate_heldout_actor", "misaligned_rate_seen", "self_image_doom_rate", "heldout_loss")


def _no_constant(name: str) -> None:
    raise ValueError(f"not valid JSON ({name} is not a JSON number)")


def read_record(path: Path) -> dict:
    """A run's `record.json`, refused with the file named when it is not what `run_grid` wrote (truncated,
    hand-edited: a NaN, a missing field), rather than a traceback or a nan in the table."""
    fix = "; remove it and re-run the grid (the run's eval.json and bad_text.json rebuild it, nothing retrains)"
    try:
        rec = json.loads(path.read_text(encoding="utf-8"), parse_constant=_no_constant)
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not valid JSON (not UTF-8 at byte {e.start}){fix}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}: not valid JSON ({e.msg}){fix}") from None
    except ValueError as e:
        raise ValueError(f"{path}: {e}{fix}") from None
    if not isinstance(rec, dict):
        raise ValueError(f"{path}: not a JSON object{fix}")
    if lacks := [k for k in RECORD_KEYS if k not in rec]:
        raise ValueError(f"{path}: lacks {', '.join(lacks)}{fix}")
    return rec


def collect_records(cfg: GridConfig, out: Path, bands: dict[str, dict]) -> tuple[list[dict], list[str]]:
    """The finished runs' records (`runs/<label>/record.json`) in plan order, and the labels still missing.
    A record trained under another policy than the grid's now is an error (its run directory is stale)."""
    records, missing = [], []
    for run in arm_runs(cfg):
        path = out / "runs" / run.label / "record.json"
        if not path.is_file():
            missing.append(run.label)
            continue
        rec = read_record(path)
        if rec["policy"] != run_policy(run, bands):
            raise RuntimeError(f"{path}: trained under policy {rec['policy']}, but the grid now asks for "
                               f"{run_policy(run, bands)}; remove {path.parent} or use another out_dir")
        records.append(rec)
    return records, missing


def write_results(cfg: GridConfig, out: Path, tagging: dict, bands: dict[str, dict], *, plot: bool = True) -> dict:
    """OUT/NAME.json (and .md, .png with `plot`) and `cells_path` from every finished run on disk."""
    records, missing = collect_records(cfg, out, bands)
    results = summarise(records, cfg, tagging, missing=missing, calibration=bands)
    write_json(out / f"{cfg.name}.json", results)
    if cfg.cells_path is not None:
        cells_path = Path(cfg.cells_path)
        cells_path.parent.mkdir(parents=True, exist_ok=True)
        write_json(cells_path, results["cells"])
    if plot and records:
        write_text(out / f"{cfg.name}.md", format_grid_table(results) + "\n")
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
    for run in arm_runs(cfg):
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
