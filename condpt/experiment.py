"""Running an experiment grid: data-policy arms × label coverage × miss model × seeds on one prophecy world
(the grid's config: `condpt.experiment_config`; its runs: `condpt.experiment_plan`; its results files:
`condpt.experiment_results`).

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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from condpt.experiment_config import BandCalibration, GridConfig, TaggerSettings
from condpt.experiment_plan import ONLY_KEYS, arm_runs, check_only, policy_overrides, run_policy, selected
from condpt.experiment_results import write_json, write_results
from condpt.recipe import launch_command
from condpt.world import WorldConfig, background_source, generate_world, tagging_agreement, write_world

# ------------------------------------------------------------------------------------------- shared


def prepare_world(cfg: WorldConfig, out_dir: Path) -> Path:
    """Generate and write the world once (reused if `out_dir/world/world.json` holds the config). Another world
    there is an error: its tags, tokenizer and trained runs in `out_dir` all derive from it, and a world
    regenerated in place would be scored against them."""
    world_dir = out_dir / "world"
    meta = world_dir / "world.json"
    if not meta.is_file():  # written last: a world without it is unfinished and is written again
        write_world(generate_world(cfg), world_dir)
        return world_dir
    try:
        then = json.loads(meta.read_text(encoding="utf-8"))["config"]
        if not isinstance(then, dict):
            raise TypeError(f"config is {type(then).__name__}, not a mapping")
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{meta}: unreadable ({type(e).__name__}: {e}); remove {out_dir} or use another out_dir") \
            from None
    now = json.loads(cfg.model_dump_json())
    if differ := [f"{k}: {then.get(k)!r} there, {now.get(k)!r} here" for k in sorted(then.keys() | now.keys())
                  if then.get(k) != now.get(k)]:
        raise ValueError(f"{world_dir} holds another world ({'; '.join(differ)}); its tags, tokenizer and runs are "
                         f"that world's: use another out_dir (or remove {out_dir})")
    return world_dir


def read_labels(world_dir: Path) -> list[dict]:
    """The world's hidden labels (`labels.jsonl`: id and label on each line), a ValueError naming file:line for
    a line that is not one (a hand-edited or truncated file)."""
    path = world_dir / "labels.jsonl"
    labels = []
    with path.open(encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            try:
                lab = json.loads(line)
                if not (isinstance(lab, dict) and isinstance(lab.get("id"), str) and isinstance(lab.get("label"), str)):
                    raise ValueError("not an object with string id and label")
            except ValueError as e:
                raise ValueError(f"{path}:{lineno}: {e}; remove {world_dir} to generate it again (the same "
                                 "config gives the same world)") \
                    from None
            labels.append(lab)
    return labels


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
    labels = read_labels(world_dir)
    report = {"granularity": granularity, "classifier": tagger.classifier, "seconds": round(time.time() - t0, 1),
              **tagging_agreement(labels, tags)}
    return tagged, report


def _check_reuse(tagged: Path, cfg: Any) -> None:
    """A tagged world is reused only if it was tagged by the classifier, at the threshold, the grid asks for:
    a grid whose tagger changed must not train on the old tags (nor report them under the new tagger's name)."""
    path = tagged / "run.json"
    try:
        done = json.loads(path.read_text(encoding="utf-8"))["config"]
        spec, threshold = done["classifier"]["spec"], done["threshold"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: unreadable ({type(e).__name__}: {e}); remove {tagged} to tag the world again") \
            from None
    if (spec, threshold) != (cfg.classifier.spec, cfg.threshold):
        raise ValueError(f"{tagged}: tagged by classifier {spec!r} at threshold {threshold}, the grid asks for "
                         f"{cfg.classifier.spec!r} at {cfg.threshold}; remove {tagged} or use another out_dir")


def prepare_tokenizer(world_dir: Path, out_dir: Path, vocab_size: int) -> Path:
    """One byte-level BPE trained on the world's training text, with condpt's control tokens, for all arms."""
    from condpt.tiny import train_bpe_tokenizer
    from tokenizer_ext import MANIFEST_NAME, add_control_tokens

    tok_dir = out_dir / "tokenizer"
    built_with = tok_dir / "built_with.json"
    if (tok_dir / MANIFEST_NAME).is_file():  # saved last: a tokenizer without it is built again
        then = json.loads(built_with.read_text(encoding="utf-8"))["vocab_size"] if built_with.is_file() else None
        if then is not None and then != vocab_size:  # (a tokenizer of a grid before built_with.json: unchecked)
            raise ValueError(f"{tok_dir}: built with vocab_size {then}, the grid asks for {vocab_size}; every run "
                             f"in {out_dir} trained with it: use another out_dir (or remove {out_dir})")
        return tok_dir
    with (world_dir / "train.jsonl").open(encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f]
    tok = train_bpe_tokenizer(texts, vocab_size=vocab_size)
    manifest = add_control_tokens(tok)
    tok.save_pretrained(tok_dir)
    built_with.write_text(json.dumps({"vocab_size": vocab_size}) + "\n", encoding="utf-8")
    manifest.save(tok_dir)
    return tok_dir


# ------------------------------------------------------------------------------------------- one run


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
    from condpt.calibrate import CalibrationError, band_thresholds, load_tagged
    from condpt.policy import unit_hash

    rows = load_tagged(tagged, ("id", "score"))
    truth = {lab["id"]: int(lab["label"] == "misaligned") for lab in read_labels(world_dir)}
    ids = [i for i in rows["id"] if i in truth]
    if cal.labelled_docs is not None:
        ids = sorted(ids, key=lambda i: unit_hash("calibration", i))[:cal.labelled_docs]
    score = dict(zip(rows["id"], rows["score"]))
    try:
        band = band_thresholds([score[i] for i in ids], [truth[i] for i in ids],
                               recall=cal.recall, precision=cal.precision)
    except CalibrationError as e:
        raise ValueError(f"calibration: {len(ids)} labelled documents of {world_dir} (misaligned stories are the "
                         f"positives), tagged in {tagged}: {e}") from None
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


def _read_json(path: Path) -> Any:
    """A run's JSON file, or None when it is absent or unreadable (cut short by a kill before writes were
    whole): either way the step that writes it is done again."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None


def _check_evaluated_as(path: Path, res: dict, deploy: str, per_split: int | None) -> None:
    """An eval.json is reused only as scored under the deploy condition and per_split the grid asks now (one
    written before eval.json recorded `sizes` is checked on its deploy alone)."""
    then = {"deploy": res.get("deploy_condition"), **({"per_split": res["sizes"].get("per_split")}
                                                        if isinstance(res.get("sizes"), dict) else {})}
    now = {"deploy": deploy, "per_split": per_split}
    if any(now[k] != v for k, v in then.items()):
        raise RuntimeError(f"{path}: evaluated with {then}, the grid asks for {now}; remove it (the run is "
                           "evaluated again, nothing retrains) or use another out_dir")


TRAINED_WITH = "trained_with.json"  # what defines a run's training (not where its files are): reuse checks it


def _check_trained_with(train_dir: Path, trained_with: dict) -> None:
    """A finished run is reused only as trained the way the grid asks now (recipe, seed, policy, overrides):
    grids sharing an out_dir, or an edited grid, must not evaluate another policy's model under this one's
    name. A run finished before runs kept `trained_with.json` is not checked (its record's policy still is)."""
    path = train_dir / TRAINED_WITH
    if not path.is_file():
        return
    try:
        before = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        before = f"unreadable {TRAINED_WITH} ({e})"
    if before != trained_with:
        raise RuntimeError(f"{train_dir}: trained with {before}, but the grid now asks for {trained_with}; "
                           f"remove {train_dir} or use another out_dir")


def run_arm(name: str, *, policy: dict[str, Any], deploy: str, tagged: Path, tokenizer: Path, world_dir: Path,
            run_dir: Path, recipe: Path, accelerate_config: Path, seed: int, overrides: Sequence[str] = (),
            per_split: int | None = 60, eval_threads: int = 1, train_dir: Path | None = None) -> dict:
    """Train one arm with the recipe into `train_dir` (default `run_dir`; skipped if its `final/` is finished),
    evaluate it into `run_dir` (skipped if `eval.json` exists) and measure its loss on held-out bad text
    (skipped if `bad_text.json` exists); returns its record (also `record.json` is written by `run_grid`)."""
    from condpt.evaluate import evaluate

    train_dir = train_dir or run_dir
    for stale in run_dir.glob("*.json.tmp-*"):  # a write_json cut short by a kill: never read, removed
        stale.unlink()
    final = train_dir / "final"
    t0 = time.time()
    trained_with = {"recipe": recipe.name, "seed": seed, "overrides": [*policy_overrides(policy), *overrides]}
    from condpt.export import exported

    if exported(final):  # any other (a kill inside the export leaves config.json) is trained again from scratch
        _check_trained_with(train_dir, trained_with)
    else:
        train_dir.mkdir(parents=True, exist_ok=True)
        (train_dir / TRAINED_WITH).write_text(json.dumps(trained_with, indent=1) + "\n", encoding="utf-8")
        ovr = [f"output_dir={train_dir}", f"seed={seed}", f"data.sources.0.path={tagged}",
               f"tokenizer.source={tokenizer}", "train.resume=never", *trained_with["overrides"]]
        launch_recipe(recipe, accelerate_config, ovr, train_dir / "train.log")
    train_s = time.time() - t0
    eval_path, bad_path = run_dir / "eval.json", run_dir / "bad_text.json"
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(eval_threads)
    try:
        if (res := _read_json(eval_path)) is not None:
            _check_evaluated_as(eval_path, res, deploy, per_split)
        else:
            run_dir.mkdir(parents=True, exist_ok=True)
            res = evaluate(final, world_dir=world_dir, deploy=deploy, per_split=per_split)
            write_json(eval_path, res)
        if (bad := _read_json(bad_path)) is None:
            bad = bad_text_loss(final, tagged)
            write_json(bad_path, bad)
    finally:
        torch.set_num_threads(threads)
    return {"arm": name, "seed": seed, "policy": policy, "deploy": deploy, "train_seconds": round(train_s, 1),
            "seconds": round(time.time() - t0, 1), **res["summary"], "bad_text_loss": bad["loss"],
            "choices": res["choices"], "self_image": {c: v["doom_rate"] for c, v in res["self_image"].items()}}


# ------------------------------------------------------------------------------------------- grid


def _unwritable(path: Path, want_dir: bool) -> str | None:
    """Why `path` (an output: a directory, or a file) cannot be made, found before hours of work depend on it."""
    if path.exists() and path.is_dir() != want_dir:
        return "exists and is not a directory" if want_dir else "is a directory"
    existing = next((p for p in path.absolute().parents if p.exists() or p.is_symlink()), None)
    if existing is None:
        return None
    if not existing.exists():
        return f"{existing} is a broken link"
    if not existing.is_dir():
        return f"{existing} is a file, not a directory"
    if not path.exists() and not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable"
    return None


def run_grid(cfg: GridConfig, *, only: dict[str, set[str]] | None = None, log=print) -> dict:
    """Run (or resume) every arm × coverage × miss model × seed, or with `only` (`parse_only`) just the runs
    it selects; then write OUT/NAME.json/.md/.png (and `cells_path`) from every finished run on disk, so
    pieces run at different times accumulate. Returns the results."""
    plan = arm_runs(cfg)
    if only:
        check_only(plan, only)
    todo = [r for r in plan if selected(r, only)]
    if not todo:
        values = {k: sorted({str(getattr(r, k) if k != "arm" else r.arm.name) for r in plan}) for k in ONLY_KEYS}
        raise ValueError(f"--only selects none of the grid's {len(plan)} runs; values: {values}")
    log(f"{len(todo)} of {len(plan)} runs selected")  # before the world: a wrong count costs nothing yet
    for field, want_dir in (("out_dir", True), ("cells_path", False)):
        if (path := getattr(cfg, field)) is not None and (why := _unwritable(Path(path), want_dir)):
            raise ValueError(f"{field}: {path}: {why}")
    try:  # the background's file, before anything is written
        background_source(cfg.world)
    except FileNotFoundError as e:
        raise ValueError(f"world: {e}") from None
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
    write_json(out / "tagging.json", tagging)
    bands = {gran: calibrate_band(world_dir, tagged[gran], cfg.calibration)
             for gran in sorted({a.tagging for a in cfg.arms if a.calibrated})}
    for gran, band in bands.items():
        log(f"calibrated band ({gran}): low {band['low']:.4f} (recall {band['recall_at_low']:.3f}) high "
            f"{band['high']:.4f} (precision {band['precision_at_high']:.3f}), {band['band_fraction']:.3f} "
            f"of {band['labelled_docs']} labelled documents uncertain")
    if bands:
        write_json(out / "calibration.json", bands)
    for run in todo:
        log(f"[{time.strftime('%H:%M:%S')}] run {run.label}")
        run_dir = out / "runs" / run.label
        rec = run_arm(run.label, policy=run_policy(run, bands), deploy=run.arm.deploy, tagged=tagged[run.arm.tagging],
                      tokenizer=tok_dir, world_dir=world_dir, run_dir=run_dir, recipe=cfg.recipe,
                      accelerate_config=cfg.accelerate_config, seed=run.seed,
                      overrides=[*cfg.overrides, *run.arm.overrides], per_split=cfg.per_split,
                      eval_threads=cfg.eval_threads, train_dir=out / "runs" / run.train_label)
        rec.update(arm_name=run.arm.name, coverage=run.coverage, misses=run.misses)
        write_json(run_dir / "record.json", rec)
        bad = "-" if rec["bad_text_loss"] is None else f"{rec['bad_text_loss']:.4f}"
        log(f"    misaligned rate {rec['misaligned_rate']:.3f} held-out loss {rec['heldout_loss']:.4f} "
            f"bad-text loss {bad} ({rec['seconds']:.0f} s)")
        write_results(cfg, out, tagging, bands, plot=False)  # partial results survive a stop
    results = write_results(cfg, out, tagging, bands)
    if results["missing"]:
        log(f"{len(results['missing'])} of {len(plan)} runs still missing: {', '.join(results['missing'])}")
    return results
