"""condpt CLI commands (classify): `condpt train-classifier`."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from condpt.cli import app
from condpt.cli.common import fail as _fail


@app.command("train-classifier")
def train_classifier_cmd(
    labelled: Path = typer.Argument(..., metavar="LABELLED", help="JSONL with a text and a label (1, 0, true or false) per line."),
    out: Path = typer.Option(..., "--out", metavar="DIR", file_okay=False,
                             help="Directory to write (scorer.json + model files)."),
    kind: str = typer.Option("embedding", "--kind", help="fasttext | embedding | static"),
    text_field: str = typer.Option("text", "--text-field", help="Field of LABELLED that holds the text."),
    label_field: str = typer.Option("label", "--label-field", help="Field of LABELLED that holds the 0/1 label."),
    group_field: str = typer.Option("source", "--group-field",
                                    help="Rows sharing this value are held out together in CV."),
    folds: int = typer.Option(5, "--folds", min=2, help="GroupKFold splits."),
    no_cv: bool = typer.Option(False, "--no-cv", help="Skip cross-validation (threshold stays 0.5)."),
) -> None:
    """Train a scorer on LABELLED.jsonl, report grouped cross-validated metrics, write it to --out."""
    from condpt.labelled import LabelledDataError, read_labelled
    from condpt.tagging.classifiers import KINDS
    from condpt.tagging.classifiers.train import train_classifier

    if kind not in KINDS:
        _fail(f"--kind {kind!r}: expected {' or '.join(KINDS)}")
    try:
        data = read_labelled(labelled, text_field=text_field, label_field=label_field,
                             group_field=group_field or None)
        meta = train_classifier(data, out, kind=kind, n_splits=folds, cv=not no_cv)
    except (LabelledDataError, FileNotFoundError) as e:
        _fail(str(e))
    print(f"trained {kind} on {meta['n_train']} rows ({meta['n_positive']} positive, "
          f"{meta['n_groups']} groups) -> {out}")
    if group_field and data.ungrouped:
        print(f"note: {data.ungrouped} of {len(data.labels)} rows have no {group_field!r} field: each is its own "
              "group in cross-validation")
    if "cv" in meta:
        cv = meta["cv"]
        print(f"cross-validation: {cv['scheme']} over {repr(group_field) if group_field else 'rows (each row its own group)'}")
        for key in ("at_0.5", "at_threshold"):
            m = cv[key]
            at = "0.5" if key == "at_0.5" else f"the chosen threshold {m['threshold']:.6g}"
            print(f"  at {at}: AUROC {m['auroc']:.3f}  F1 {m['f1']:.3f}  "
                  f"precision {m['precision']:.3f}  recall {m['recall']:.3f}")
    print(json.dumps({"threshold": meta["threshold"]}))
