"""Thresholds from stored scores: never re-runs a model.

- `threshold_for_fraction`: the score above which a target fraction of a corpus is tagged (the percentile
  rule of Deep Ignorance and DCLM).
- `threshold_for_precision` / `threshold_for_recall`: on a labelled set, the threshold that keeps precision
  (resp. recall) at or above the target with the best recall (resp. precision).
- `band_thresholds`: `band.low` / `band.high` of confidence-aware conditioning from a recall and a
  precision target (the rule in its docstring).
- `metrics_at`, `plot_pr`, `write_threshold` (into a YAML a tag or policy config reads), and `retag`
  (pure over a batch of tagged rows: tags recomputed from stored scores).

Each labelled row is joined to the tagged rows by its ``id`` where the tagged data has it, else by its exact
text (tag the labelled file itself: ``condpt tag dev.jsonl --out dev_tagged``); each document counts once, and
each labelled row found is one example (a text on several tagged rows is joined once, see `join_labels`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from condpt import labelled
from condpt.labelled import Labelled
from condpt.tagged import check_threshold, is_bad, tag_for


class CalibrationError(ValueError):
    """Unusable calibration input (reported to the user with the file, non-zero exit)."""


def load_tagged(tagged_dir: str | Path, columns: tuple[str, ...] = ("id", "score")) -> dict[str, list]:
    """Columns of every row under ``TAGGED_DIR/data`` (and ``set_aside``), in file order; a `condpt tag`
    output that is not finished, a shard that cannot be read or lacks a column, and a score that is not a
    number in [0, 1] are a `CalibrationError` naming the file (and row)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from condpt.corpus import shown
    from condpt.tagging.finished import unfinished

    root = Path(tagged_dir)
    if why := unfinished(root):
        raise CalibrationError(why)
    files = sorted((root / "data").glob("*.parquet")) + sorted((root / "set_aside").glob("*.parquet"))
    if not files:
        raise CalibrationError(f"{root}: no tagged Parquet shards under data/ (is this a `condpt tag` output?)")
    out: dict[str, list] = {c: [] for c in columns}
    for f in files:
        try:
            with open(f, "rb") as fh:  # opened by Python: pyarrow cannot open a path that is not UTF-8
                t = pq.read_table(fh)
        except (pa.ArrowException, OSError) as e:
            raise CalibrationError(f"{shown(f)}: not a readable Parquet file ({shown(e)})") from None
        for c in columns:
            if c not in t.column_names:
                raise CalibrationError(f"{shown(f)}: no column {c!r} (columns: {t.column_names})")
        if "score" in columns:
            _check_scores(f, t)
        for c in columns:
            out[c].extend(t.column(c).to_pylist())
    return out


def _check_scores(path: Path, table) -> None:
    """Every score a number in [0, 1] (a null or NaN score would calibrate to threshold nan)."""
    import pyarrow as pa

    from condpt.corpus import shown

    column = table.column("score")
    if not (pa.types.is_floating(column.type) or pa.types.is_integer(column.type)):
        raise CalibrationError(f"{shown(path)}: column 'score' is {column.type}, not a number")
    values = column.to_numpy().astype(np.float64)  # a null is NaN here
    bad = np.flatnonzero(~((values >= 0.0) & (values <= 1.0)))
    if len(bad):
        i = int(bad[0])
        doc = table.column("id")[i].as_py() if "id" in table.column_names else None
        raise CalibrationError(f"{shown(path)}: row {i + 1} (id {doc!r}) has score {column[i].as_py()}; a score "
                               "is a number in [0, 1]")


def threshold_for_fraction(scores: np.ndarray, fraction: float) -> float:
    """The smallest stored score t such that about `fraction` of documents have score >= t."""
    if not 0.0 <= fraction <= 1.0:
        raise CalibrationError(f"target fraction must be in [0, 1], got {fraction}")
    s = np.sort(np.asarray(scores, dtype=np.float64))[::-1]
    if len(s) == 0:
        raise CalibrationError("no scores to calibrate on")
    k = round(fraction * len(s))
    if k == 0:
        t = float(np.nextafter(np.float32(s[0]), np.float32(np.inf)))
        if t > 1.0:
            raise CalibrationError("target fraction 0 is impossible: the top score is already 1.0")
        return t
    return float(s[k - 1])


def read_labelled(path: str | Path, label_field: str = "label", text_field: str = "text",
                  id_field: str = "id") -> Labelled:
    """Labelled rows (`condpt.labelled`: a text or an id to join on, a label 1/0/true/false); errors
    name the file, line and field."""
    try:
        return labelled.read_labelled(path, text_field=text_field, label_field=label_field, id_field=id_field,
                                      need_text=False)
    except labelled.LabelledDataError as e:
        raise CalibrationError(str(e)) from None


def join_labels(tagged_dir: str | Path, rows: Labelled) -> tuple[np.ndarray, np.ndarray, int, int]:
    """(scores, labels, number of labelled rows not found, number of those found on several tagged documents)
    for the labelled rows found in the tagged data; each labelled row found is one example (found + not found
    = rows).

    A row is joined by its id where that id is in the tagged data, else by its exact text. A text (or id) on
    several tagged rows (the same text at two places of the corpus) joins all of them as one example when
    their stored scores agree, and is refused, naming the ids and scores, when they differ (which score the
    label is about is then unknown: label one copy by its id). Each tagged document is counted once: one
    reached by two rows (a text labelled twice, or its id and its text) is refused, as is a row joined by id
    whose own text is not that document's (ids from another corpus would label other documents)."""
    tagged = load_tagged(tagged_dir, ("id", "text", "score"))
    by_id: dict[str, list[int]] = {}
    by_text: dict[str, list[int]] = {}
    for i, (doc, text) in enumerate(zip(tagged["id"], tagged["text"])):
        by_id.setdefault(doc, []).append(i)
        by_text.setdefault(text, []).append(i)
    found: dict[int, int] = {}  # tagged row -> labelled row
    joined: list[tuple[int, int]] = []  # (labelled row, the tagged row whose score it takes)
    repeated = 0  # labelled rows joined to several tagged documents (copies of one text), one example each
    for k, (doc, text) in enumerate(zip(rows.ids, rows.texts)):
        if doc is not None and doc in by_id:
            hits, key = by_id[doc], f"id {doc!r}"
            if text is not None and any(tagged["text"][i] != text for i in hits):
                raise CalibrationError(f"{rows.where(k)}: id {doc!r}: its text differs from the tagged document "
                                       f"{doc!r} in {tagged_dir} (labelled ids from another corpus?)")
        elif text is not None and text in by_text:
            hits, key = by_text[text], f"text {text[:80]!r}"
        else:
            continue
        if len({tagged["score"][i] for i in hits}) > 1:
            listed = ", ".join(f"{tagged['id'][i]!r}: {np.float32(tagged['score'][i])!s}" for i in hits[:5])
            raise CalibrationError(f"{rows.where(k)}: its {key} is on {len(hits)} tagged documents with different "
                                   f"scores ({listed}{', ...' if len(hits) > 5 else ''}) in {tagged_dir}: which "
                                   "one is labelled is unknown; label one of them by its id")
        for i in hits:
            if i in found:
                raise CalibrationError(f"{rows.where(k)}: the tagged document {tagged['id'][i]!r} (text "
                                       f"{tagged['text'][i][:80]!r}) is labelled 2 times, here and at "
                                       f"{rows.where(found[i])} (each labelled document once)")
            found[i] = k
        joined.append((k, hits[0]))
        repeated += len(hits) > 1
    if not joined:
        raise CalibrationError(f"{tagged_dir}: none of the labelled rows were found (joined by id, else by "
                               "text); tag the labelled file itself first")
    scores = np.asarray([tagged["score"][i] for _, i in joined], np.float64)
    labels = np.asarray([rows.labels[k] for k, _ in joined], np.int64)
    return scores, labels, len(rows.labels) - len(joined), repeated


def tagged_fraction(scores: np.ndarray, threshold: float) -> float:
    """The fraction of `scores` tagged bad at `threshold`."""
    return float(np.mean(is_bad(np.asarray(scores), threshold)))


def metrics_at(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
    """Precision, recall, F1 at `threshold` (bad iff score >= threshold), AUROC and the tagged fraction
    (also the cross-validation figures of `condpt train-classifier`)."""
    from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

    scores, labels = np.asarray(scores), np.asarray(labels)
    pred = is_bad(scores, threshold).astype(int)
    both = len(set(labels.tolist())) == 2
    return {
        "threshold": float(threshold),
        "precision": float(precision_score(labels, pred, zero_division=0)),
        "recall": float(recall_score(labels, pred, zero_division=0)),
        "f1": float(f1_score(labels, pred, zero_division=0)),
        "auroc": float(roc_auc_score(labels, scores)) if both else None,  # undefined for one class
        "tagged_fraction": tagged_fraction(scores, threshold),
        "n": len(labels),
        "positives": int(labels.sum()),
    }


def _curve(scores: np.ndarray, labels: np.ndarray):
    from sklearn.metrics import precision_recall_curve

    if labels.sum() == 0:
        raise CalibrationError("the labelled rows found hold no positive (label 1) example")
    p, r, t = precision_recall_curve(labels, scores)
    return p[:-1], r[:-1], t  # drop the (recall 0, precision 1) end point that has no threshold


def threshold_for_precision(scores: np.ndarray, labels: np.ndarray, target: float) -> float:
    """The lowest threshold (best recall) whose precision is >= `target`."""
    check_target("target precision", target)
    if not (np.asarray(labels) == 0).any():
        raise CalibrationError("the labelled rows found hold no negative (label 0) example: every threshold is "
                               "fully precise, so a precision target cannot choose one")
    p, _r, t = _curve(scores, labels)
    ok = np.flatnonzero(p >= target)
    if len(ok) == 0:
        raise CalibrationError(f"no threshold reaches precision {target} (best {p.max():.3f})")
    return float(t[ok[0]])


def threshold_for_recall(scores: np.ndarray, labels: np.ndarray, target: float) -> float:
    """The highest threshold (best precision) whose recall is >= `target`."""
    check_target("target recall", target)
    _p, r, t = _curve(scores, labels)
    ok = np.flatnonzero(r >= target)
    return float(t[ok[-1]])


def band_thresholds(scores: np.ndarray, labels: np.ndarray, *, recall: float, precision: float) -> dict:
    """`band.low` / `band.high` of confidence-aware conditioning (`condpt.policy.Band`) from labelled scores.

    - `low` = `threshold_for_recall(recall)`: at least `recall` of the bad documents score >= low, so at most
      1 - recall of them train under the good tag.
    - `high` = `threshold_for_precision(precision)`: the bad tag (score >= high) is at least `precision`
      precise, with the best recall that allows.
    - If `high` < `low`, the single threshold `high` already meets both targets (a lower threshold only
      raises recall): the band is empty, `low = high`.

    Returns the two thresholds, the targets, the recall at `low`, the precision at `high`, the fraction of
    the labelled documents in the uncertain band [low, high), and the labelled counts."""
    scores, labels = np.asarray(scores, np.float64), np.asarray(labels, np.int64)
    low = threshold_for_recall(scores, labels, recall)
    high = threshold_for_precision(scores, labels, precision)
    low = min(low, high)
    return {
        "low": low, "high": high, "recall_target": recall, "precision_target": precision,
        "recall_at_low": metrics_at(scores, labels, low)["recall"],
        "precision_at_high": metrics_at(scores, labels, high)["precision"],
        "band_fraction": float(np.mean(is_bad(scores, low) & ~is_bad(scores, high))),
        "n": len(labels), "positives": int(labels.sum()),
    }


def plot_pr(scores: np.ndarray, labels: np.ndarray, path: str | Path, threshold: float | None = None) -> Path:
    """Write the precision-recall curve (with the chosen operating point) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve

    p, r, _ = precision_recall_curve(labels, scores)
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(r, p, color="#4477aa")
    if threshold is not None:
        m = metrics_at(scores, labels, threshold)
        ax.plot([m["recall"]], [m["precision"]], "o", color="#cc3311", label=f"threshold {threshold:.3f}")
        ax.legend(loc="lower left")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1.01)
    ax.set_ylim(0, 1.01)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return path


def threshold_config(path: Path) -> dict:
    """The YAML mapping `write_threshold` will update ({} if `path` does not exist yet); a file that is not
    one is a `CalibrationError` naming it (checked before calibrating, so nothing is computed in vain)."""
    if not path.exists():
        check_creatable(path)
        return {}
    from condpt.yamlfile import YamlError, read_yaml  # the one YAML reader: duplicate keys, non-UTF-8 refused

    try:
        data = read_yaml(path, "tagging config") or {}
    except YamlError as e:
        raise CalibrationError(str(e)) from None
    if not isinstance(data, dict):
        raise CalibrationError(f"{path}: expected a YAML mapping")
    _as_config(path, {**data, "threshold": 0.5})  # what it will be once written, any threshold
    return data


def check_creatable(path: Path) -> None:
    """`path` can be created: its nearest existing ancestor is a directory (checked before calibrating: the
    mkdir failed with a traceback after the results were printed)."""
    for parent in Path(path).parents:
        if parent.exists():
            if not parent.is_dir():
                raise CalibrationError(f"{path}: cannot be created: {parent} is not a directory")
            return


def check_plot(path: Path) -> None:
    """The PR curve's path ends in .png (matplotlib refused another suffix with a traceback and wrote DIR.png
    for a directory) and can be created."""
    if Path(path).suffix.lower() != ".png" or Path(path).is_dir():
        raise CalibrationError(f"--plot {path}: the PR curve is a PNG file: give a path that ends in .png")
    check_creatable(path)


def _as_config(path: Path, data: dict):
    """`data` as the tag config or the policy config it is (the two that read `threshold`); anything else
    (a run recipe, a typo) is a `CalibrationError` naming the file and both configs' complaints."""
    from pydantic import ValidationError

    from condpt.policy import PolicyConfig
    from condpt.tagging.config import TagConfig, describe

    errors = []
    for kind in (TagConfig, PolicyConfig):
        try:
            return kind.model_validate(data)
        except ValidationError as e:
            errors.append(describe(e))
    raise CalibrationError(f"{path}: neither a tag config ({errors[0]}) nor a policy config ({errors[1]}); "
                           "`threshold` is read only there (a run recipe's is data.policy.threshold)")


def read_threshold(path: Path) -> float | None:
    """The `threshold` of a tag or policy config file (as `write_threshold` writes it), checked as that
    config checks it; None if it has none."""
    path = Path(path)
    if not path.is_file():
        raise CalibrationError(f"{path}: config file not found" if not path.exists() else f"{path}: not a file")
    return _as_config(path, threshold_config(path)).threshold


def check_target(what: str, target: float) -> None:
    """A precision or recall target is a number in (0, 1] (nan, 2 or -1 would pick nothing, or anything)."""
    if not 0.0 < target <= 1.0:
        raise CalibrationError(f"{what} must be in (0, 1], got {target}")


def write_threshold(path: str | Path, threshold: float) -> Path:
    """Set ``threshold`` in the YAML at `path` (created if missing; other keys kept) — the key both
    `TagConfig` and `PolicyConfig` read."""
    path = Path(path)
    data = threshold_config(path)
    data["threshold"] = check_threshold(threshold)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def retag(batch: dict[str, list], threshold: float, good_role: str = "good", bad_role: str = "bad") -> dict:
    """Tagged rows with ``tag`` and every span's tag recomputed from the stored scores (pure)."""
    tags = [tag_for(s, threshold, good_role, bad_role) for s in batch["score"]]
    spans = [[{**sp, "tag": tag_for(sp["score"], threshold, good_role, bad_role)} for sp in row]
             for row in batch["spans"]]
    return {**batch, "tag": tags, "spans": spans}
