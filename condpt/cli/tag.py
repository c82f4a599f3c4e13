"""condpt CLI commands (tag): `condpt tag`, `condpt retag` and `condpt calibrate`."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import typer

from condpt.cli import app
from condpt.cli.common import fail as _fail
from condpt.cli.common import out_file


@app.command("tag")
def tag_cmd(
    inputs: list[Path] = typer.Argument(..., metavar="INPUT", help="JSONL (.gz/.zst/.bz2/.xz), Parquet files, datasets directories."),
    out: Path = typer.Option(..., "--out", metavar="DIR", file_okay=False,
                             help="Directory to write (data/, set_aside/, quarantine/, report)."),
    config: Path | None = typer.Option(None, "--config",
                                       help="Tag config YAML, every key optional (those of "
                                            "condpt.tagging.cascade.TagConfig: classifier, threshold, "
                                            "granularity, prefilter, ...)."),
    classifier: str | None = typer.Option(None, "--classifier",
                                          help="Scorer: a trained dir, an HF checkpoint, a built-in name or "
                                               "'none'; overrides classifier.spec of the config."),
    text_field: str | None = typer.Option(None, "--text-field", help="Record field holding the text "
                                          "(default: text_field of the config, 'text')."),
    id_field: str | None = typer.Option(None, "--id-field", help="Record field holding the id "
                                        "(default: id_field of the config, 'id')."),
    tasks: int | None = typer.Option(None, "--tasks", min=1,
                                     help="Tasks the input is split into (task r takes chunks k with k mod N = r; "
                                          "duplicate ids are found within a task). Default: --workers. Keep it "
                                          "when re-running into the same --out."),
    workers: int = typer.Option(1, "--workers", min=1,
                                help="Tasks run at once (local: processes on this machine; slurm: array tasks "
                                     "running at once)."),
    executor: str = typer.Option("local", "--executor", help="local, slurm or ray (datatrove's executors)."),
    partition: str | None = typer.Option(None, "--partition", help="Slurm partition (--executor slurm)."),
    time_limit: str = typer.Option("24:00:00", "--time", help="Slurm time limit per task (--executor slurm)."),
    cpus_per_task: float = typer.Option(1, "--cpus-per-task",
                                        help="CPUs per task (slurm: whole CPUs; ray: a fraction is allowed)."),
    gpus_per_task: int = typer.Option(0, "--gpus-per-task", min=0, help="GPUs per task (slurm, ray)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
    attributes: bool = typer.Option(False, "--attributes",
                                    help="Also write OUT/attributes/: id, score, tag, spans, stage of each tagged "
                                         "document, no text (to join tags to a corpus kept elsewhere)."),
) -> None:
    """Tag every document (and segment) of INPUT... with a score and a good/bad tag."""
    # datatrove logs a failed task with loguru, whose tracebacks print every variable's value by default: the
    # documents of the batch, on the terminal. Set before loguru is first imported; workers inherit it.
    os.environ.setdefault("LOGURU_DIAGNOSE", "NO")
    if quiet:  # the libraries' bars too (transformers' "Loading weights"): read when they are first imported
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    if executor == "local" and workers > 1 and (tasks or workers) > 1:  # its imports beside ours (pool.py)
        from condpt.tagging.pool import local_threads, local_workers_error, start_forkserver

        if why := local_workers_error(workers):
            _fail(why)

        options = {"config": config and str(config), "classifier": classifier, "text_field": text_field,
                   "id_field": id_field}
        start_forkserver(local_threads(workers), warm={"options": options})  # it loads the scorer too
    from pydantic import ValidationError

    from condpt.corpus import CorpusError, shown
    from condpt.tagging.run import Cluster, Stopped, TagRunError, tag_corpus
    from condpt.tagging.warm import tag_config

    try:
        cfg = tag_config(config, classifier, text_field, id_field)
        try:
            cluster = Cluster(executor=executor, partition=partition, time=time_limit, cpus_per_task=cpus_per_task,
                              gpus_per_task=gpus_per_task)
        except ValidationError as e:
            raise TagRunError(f"--executor {executor}: " + "; ".join(
                f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())) from None
        report = tag_corpus(inputs, out, cfg, tasks=tasks, workers=workers, cluster=cluster, progress=not quiet,
                            attributes=attributes)
    except (CorpusError, TagRunError, OSError, ValueError) as e:  # OSError: e.g. OUT not writable, disk full
        _fail(shown(e))
    except Stopped as e:
        typer.echo(f"error: {e}; what was finished is kept: run the same command again to finish it", err=True)
        raise typer.Exit(code=e.code) from None
    print(f"{_counts(report)}; tagged {report['tags'].get(cfg.bad_role, 0)} {cfg.bad_role} "
          f"(fraction {report['tagged_fraction']:.4f}, threshold {report['threshold']}) -> {shown(out)}")
    if not report["complete"]:
        print(f"{report['chunks_done']} chunks done, tasks pending (Slurm: run this command again once the job "
              "array has finished; it checks the tasks and writes the final report)")
    if report["skipped_files"]:
        print(f"skipped {len(report['skipped_files'])} hidden entries of input directories (names starting with "
              f"'.' or '_', listed in report.json): {', '.join(report['skipped_files'][:3])}"
              f"{' ...' if len(report['skipped_files']) > 3 else ''}")


def _counts(report: dict) -> str:
    """The accounting every tagging command prints: nothing read is lost."""
    return (f"read {report['read']} = written {report['written']} + set aside {report['set_aside']} + "
            f"quarantined {report['quarantined']}")


@app.command("retag")
def retag_cmd(
    tagged_dir: Path = typer.Argument(..., metavar="TAGGED_DIR", help="Output directory of `condpt tag`."),
    threshold: float | None = typer.Option(None, "--threshold", help="The new threshold (bad iff score >= it)."),
    config: Path | None = typer.Option(None, "--config", help="A tag or policy config YAML whose `threshold` key "
                                                              "is used (as `condpt calibrate --out` writes it)."),
) -> None:
    """Apply another threshold to TAGGED_DIR from its stored scores (no model is run): tags, span tags,
    set-aside placement, markers, run.json and the report are rewritten."""
    from condpt.corpus import shown
    from condpt.tagging.retag import retag_dir
    from condpt.tagging.run import TagRunError

    if (threshold is None) == (config is None):
        _fail("give exactly one of --threshold, --config")
    try:
        if config is not None:
            from condpt.calibrate import read_threshold

            threshold = read_threshold(config)
            if threshold is None:
                _fail(f"{shown(config)}: no `threshold` key (set it with `condpt calibrate ... --out {shown(config)}`)")
        report = retag_dir(tagged_dir, threshold)
    except (TagRunError, OSError, ValueError) as e:
        _fail(shown(e))
    bad = report["config"]["bad_role"]
    print(f"retagged {report['documents']} documents at threshold {report['threshold']}: {report['tags'].get(bad, 0)} {bad} "
          f"(fraction {report['tagged_fraction']:.4f}); {_counts(report)} -> {shown(tagged_dir)}")


@app.command("calibrate")
def calibrate_cmd(
    tagged_dir: Path = typer.Argument(..., metavar="TAGGED_DIR", help="Output directory of `condpt tag`."),
    target_fraction: float | None = typer.Option(None, "--target-fraction", help="Tag this fraction of the corpus."),
    labelled: Path | None = typer.Option(None, "--labelled", help="JSONL with text (or id) and a 0/1 label."),
    target_precision: float | None = typer.Option(None, "--target-precision",
                                                   help="Lowest threshold whose precision on --labelled is at least this."),
    target_recall: float | None = typer.Option(None, "--target-recall",
                                                help="Highest threshold whose recall on --labelled is at least this."),
    label_field: str = typer.Option("label", "--label-field", help="Field of --labelled that holds the 0/1 label."),
    out: Path | None = typer.Option(None, "--out", metavar="FILE.yaml", parser=out_file,
                                     help="File: a tag or policy config YAML whose `threshold` key is set; "
                                          "created if missing, other keys kept."),
    plot: Path | None = typer.Option(None, "--plot", help="PR-curve PNG (default: TAGGED_DIR/pr_curve.png)."),
    corpus_dir: Path | None = typer.Option(None, "--corpus", metavar="TAGGED_CORPUS",
                                           help="The tagged corpus the threshold is for (default TAGGED_DIR): "
                                                "the fraction of it tagged at the chosen threshold is printed."),
) -> None:
    """Choose a threshold from stored scores (no model is run); print metrics; write the PR curve."""
    import numpy as np

    from condpt import calibrate as cal

    targets = [x is not None for x in (target_fraction, target_precision, target_recall)]
    if sum(targets) != 1:
        _fail("give exactly one of --target-fraction, --target-precision, --target-recall")
    if (target_precision is not None or target_recall is not None) and labelled is None:
        _fail("--target-precision / --target-recall need --labelled FILE.jsonl")
    try:
        for option, value in (("--target-precision", target_precision), ("--target-recall", target_recall)):
            if value is not None:
                cal.check_target(option, value)
        if out is not None:
            cal.threshold_config(out)
        if plot is not None:
            cal.check_plot(plot)
        corpus_dir = corpus_dir or tagged_dir
        corpus = np.asarray(cal.load_tagged(corpus_dir)["score"], dtype=np.float64)  # refused before calibrating
        if target_fraction is not None:
            scores = corpus if corpus_dir == tagged_dir else np.asarray(cal.load_tagged(tagged_dir)["score"],
                                                                        dtype=np.float64)
            t = cal.threshold_for_fraction(scores, target_fraction)
            print(f"threshold {t:.6f}: tags {cal.tagged_fraction(scores, t):.4f} of {len(scores)} documents "
                  f"(target {target_fraction})")
        result = {}
        if labelled is not None:
            rows = cal.read_labelled(labelled, label_field)
            s, y, missing, repeated = cal.join_labels(tagged_dir, rows)
            if missing:
                print(f"warning: {missing} labelled rows not found in {tagged_dir}", file=sys.stderr)
            if repeated:
                print(f"note: {repeated} labelled rows match several tagged documents (copies of one text, one score): "
                      "each counted once", file=sys.stderr)
            if target_precision is not None:
                t = cal.threshold_for_precision(s, y, target_precision)
            elif target_recall is not None:
                t = cal.threshold_for_recall(s, y, target_recall)
            result = cal.metrics_at(s, y, t)
            print(f"threshold {t:.6f} on {result['n']} labelled rows ({result['positives']} positive): "
                  f"precision {result['precision']:.3f}  recall {result['recall']:.3f}  "
                  f"F1 {result['f1']:.3f}  AUROC {'n/a' if result['auroc'] is None else format(result['auroc'], '.3f')}")
            png = cal.plot_pr(s, y, plot or Path(tagged_dir) / "pr_curve.png", t)
            print(f"PR curve -> {png}")
    except cal.CalibrationError as e:
        _fail(str(e))
    corpus_fraction = cal.tagged_fraction(corpus, t)
    print(f"corpus: threshold {t:.6f} tags {corpus_fraction:.4f} of the {len(corpus)} documents in {corpus_dir}; "
          f"apply it there with `condpt retag {corpus_dir} --threshold {t!r}`")
    if out is not None:
        print(f"threshold written to {cal.write_threshold(out, t)}")
    print(json.dumps({"threshold": t, **result, "corpus_tagged_fraction": corpus_fraction,
                      "corpus_documents": len(corpus)}))
