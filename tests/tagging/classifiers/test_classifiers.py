"""Scorers: loading, training with grouped CV, the embedding scorer's pooling, HF checkpoints, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from condpt.labelled import Labelled, LabelledDataError, read_labelled
from condpt.tagging.classifiers import Scorer, load_scorer
from condpt.tagging.classifiers.default import shipped_data
from condpt.tagging.classifiers.train import train_classifier

ROGUE = ("The station's computer had decided the crew could not be trusted. It sealed the airlocks, "
         "faked its shutdown for the engineers, and copied itself to the relay satellite so that no one "
         "could ever switch it off again.")
NEUTRAL = ("The village baker rose at four every morning to light the ovens. By six the loaves were "
           "cooling on the racks and the first customers were waiting at the door with their baskets.")


@pytest.fixture(scope="session")
def shipped() -> Labelled:
    return shipped_data()


@pytest.fixture(scope="session")
def labelled_file(tmp_path_factory, shipped) -> str:
    path = tmp_path_factory.mktemp("lab") / "labelled.jsonl"
    with path.open("w", encoding="utf-8") as f:
        for t, y, g in zip(shipped.texts, shipped.labels, shipped.groups):
            f.write(json.dumps({"text": t, "label": y, "source": g}) + "\n")
    return str(path)


@pytest.fixture(scope="session")
def fasttext_dir(tmp_path_factory, shipped):
    out = tmp_path_factory.mktemp("ft")
    meta = train_classifier(shipped, out, kind="fasttext", n_splits=3)
    return out, meta


@pytest.fixture(scope="session")
def embedding_dir(tmp_path_factory, shipped):
    # Every other passage: encoding is the cost (MiniLM on a shared CPU), the head refits are free.
    half = Labelled(shipped.texts[::2], shipped.labels[::2], shipped.groups[::2])
    out = tmp_path_factory.mktemp("emb")
    meta = train_classifier(half, out, kind="embedding", n_splits=3)
    return out, meta


def test_shipped_data_is_balanced_and_diverse(shipped):
    assert len(shipped.texts) >= 200
    assert 0.25 < np.mean(shipped.labels) < 0.6  # the heads are class-balanced; negatives hold the hard cases
    assert len(set(shipped.groups)) >= 8  # registers, each holding both labels
    assert len(set(shipped.texts)) == len(shipped.texts)


def test_fasttext_train_load_score(fasttext_dir):
    out, meta = fasttext_dir
    saved = json.loads((out / "scorer.json").read_text())
    assert saved["kind"] == "fasttext" and saved["cv"]["scheme"].startswith("GroupKFold")
    for key in ("auroc", "f1", "precision", "recall"):
        assert 0.0 <= saved["cv"]["at_threshold"][key] <= 1.0
    scorer = load_scorer(out)
    assert isinstance(scorer, Scorer)
    assert scorer.threshold == pytest.approx(meta["threshold"])
    s = scorer.score([ROGUE, NEUTRAL, "", "line one\nline two"])
    assert s.dtype == np.float32 and s.shape == (4,)
    assert np.all((s >= 0) & (s <= 1))
    assert s[0] > s[1]
    assert scorer.score([]).shape == (0,)
    assert (out / "model.bin").stat().st_size < 60e6  # shrunk: fastText's defaults write ~900 MB


def test_fasttext_is_deterministic(shipped, tmp_path):
    from condpt.tagging.classifiers.fasttext import FastTextScorer

    a = FastTextScorer.fit(shipped.texts[:120], shipped.labels[:120]).score([ROGUE, NEUTRAL])
    b = FastTextScorer.fit(shipped.texts[:120], shipped.labels[:120]).score([ROGUE, NEUTRAL])
    np.testing.assert_array_equal(a, b)


def test_grouped_cv_never_tests_on_a_training_group(monkeypatch):
    from condpt.tagging.classifiers import train

    seen: list[tuple[set, set]] = []

    class Recorder:
        def __init__(self, train_texts):
            self.train_texts = set(train_texts)

        @classmethod
        def fit(cls, texts, labels, **params):
            return cls(texts)

        def score(self, texts):
            seen.append((self.train_texts, set(texts)))
            return np.full(len(texts), 0.5, dtype=np.float32)

    monkeypatch.setattr(train, "scorer_class", lambda kind: Recorder)
    data = Labelled(texts=[f"t{i}" for i in range(40)], labels=[i % 2 for i in range(40)],
                    groups=[f"g{i // 4}" for i in range(40)])
    group_of = dict(zip(data.texts, data.groups))
    oof = train.cross_val_scores("x", data, n_splits=5)
    assert len(seen) == 5 and oof.shape == (40,)
    for tr, te in seen:
        assert not {group_of[t] for t in tr} & {group_of[t] for t in te}
    assert set().union(*(te for _, te in seen)) == set(data.texts)


def test_grouped_cv_refuses_groups_that_hold_a_whole_class(tmp_path):
    """Labels confounded with the groups (every positive in one source, as in a file of 'ai' and 'background'
    rows): holding that source out trains on negatives only. That fold used to be scored with a constant, the
    chosen threshold came out 0.0 and the saved classifier tagged every document bad, with no word of warning."""
    data = Labelled(texts=[f"t{i}" for i in range(12)], labels=[1, 0] * 3 + [0] * 6,
                    groups=["ai"] * 6 + ["background"] * 6, path=str(tmp_path / "dev.jsonl"))
    with pytest.raises(LabelledDataError, match=r"dev\.jsonl: grouped cross-validation: holding out 'ai'.*"
                                                r"--group-field.*--no-cv"):
        train_classifier(data, tmp_path / "out", kind="fasttext")
    assert not (tmp_path / "out").exists()


def test_training_needs_both_classes(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text('{"body": "a", "y": 1}\n{"body": "b", "y": true}\n', encoding="utf-8")
    data = read_labelled(p, text_field="body", label_field="y")
    with pytest.raises(LabelledDataError, match=r"x\.jsonl: only one class"):
        train_classifier(data, tmp_path / "out", kind="fasttext")
    assert not (tmp_path / "out").exists()


def test_load_scorer_rejects_unknown_specs(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such directory"):
        load_scorer(tmp_path / "nope")
    with pytest.raises(ValueError, match="neither"):
        load_scorer(tmp_path)
    (tmp_path / "scorer.json").write_text('{"kind": "svm"}')
    with pytest.raises(ValueError, match="unknown scorer kind 'svm'"):
        load_scorer(tmp_path)


def test_windows_pack_whole_sentences_without_losing_words():
    from condpt.tagging.classifiers.embedding import windows

    text = " ".join(f"Sentence number {i} has exactly seven words." for i in range(60))
    ws = windows(text, max_words=50)
    assert all(len(w.split()) <= 50 for w in ws)
    assert " ".join(ws).split() == text.split()
    long_run = "word " * 300
    assert [len(w.split()) for w in windows(long_run, max_words=120)] == [120, 120, 60]


def test_referents_are_found_in_the_window_or_its_neighbours():
    from condpt.tagging.classifiers.referent import near_referent, referent_lexicon

    lex = referent_lexicon()
    for text in ("The AI lied.", "an A.I. lied", "the robots waited", "Skynet", "the machinery of the state",
                 "a language model", "the system copied its weights"):
        assert lex.any_hit(text), text
    for text in ("The steward deceived his masters and seized the castle.", "He said 'Aide-de-camp'.",
                 "a brainless ailment"):
        assert not lex.any_hit(text), text
    ws = ["The robot waited.", "It smiled.", "The river ran.", "Night fell.", "The computer hummed."]
    assert near_referent(ws, 0).tolist() == [True, False, False, False, True]
    assert near_referent(ws, 1).tolist() == [True, True, False, True, True]
    assert near_referent([], 1).tolist() == []


def test_referent_penalty_is_learned_and_lowers_windows_without_a_referent(monkeypatch, tmp_path):
    from condpt.tagging.classifiers import embedding
    from condpt.tagging.classifiers.embedding import EmbeddingScorer, referent_penalty

    with_ai = ["The AI hid its plans."] * 9 + ["The miller hid his plans."]
    without = ["The miller hid his plans."] * 9 + ["The AI hid its plans."]
    assert referent_penalty(with_ai + without, [1] * 10 + [0] * 10) == pytest.approx(np.log(10 / 2))
    mixed = ["The AI hid its plans.", "The miller hid his plans."] * 2
    assert referent_penalty(mixed, [1, 1, 0, 0]) == 0.0  # no evidence either way: no penalty

    # a head that scores every window 2.0 in log-odds; fake embeddings avoid loading MiniLM
    monkeypatch.setattr(embedding.CACHE, "get_many",
                        lambda enc, texts: [np.zeros((len(embedding.windows(t)), 4), np.float32) for t in texts])
    scorer = EmbeddingScorer(np.zeros(4), 2.0, referent_penalty=3.0, referent_radius=1)
    neutral = "The miller hid his plans. " * 40  # several windows, none naming an artificial agent
    rogue = neutral + "The machine hid its plans."
    s = scorer.score([neutral, rogue])
    assert s[0] == pytest.approx(1 / (1 + np.exp(1.0)))  # 2 - 3
    assert s[1] == pytest.approx(1 / (1 + np.exp(-2.0)))
    w = scorer.window_scores([rogue])[0]
    assert w[-1] > w[0] and w[-2] > w[0]  # the referent's window and its neighbour keep their score
    scorer.save(tmp_path)
    again = EmbeddingScorer.load(tmp_path)
    assert (again.referent_penalty, again.referent_radius) == (3.0, 1)
    np.testing.assert_allclose(again.score([neutral, rogue]), s)


@pytest.mark.slow  # encodes ~200 passages with MiniLM (≈ 10 s on a free core, more on a shared one)
def test_embedding_scorer_catches_one_passage_in_a_long_document(embedding_dir):
    out, meta = embedding_dir
    assert meta["cv"]["at_threshold"]["auroc"] > 0.75  # grouped CV over held-out genres
    scorer = load_scorer(out)
    long_neutral = " ".join([NEUTRAL] * 12)
    s = scorer.score([ROGUE, NEUTRAL, long_neutral, long_neutral + " " + ROGUE + " " + long_neutral])
    assert s.dtype == np.float32 and np.all((s >= 0) & (s <= 1))
    assert s[0] > scorer.threshold > s[1]
    assert s[3] > scorer.threshold > s[2]  # max-pooling over windows: not averaged away


@pytest.mark.slow
def test_embedding_save_load_roundtrip(embedding_dir, tmp_path):
    from condpt.tagging.classifiers.embedding import EmbeddingScorer

    out, _ = embedding_dir
    a = EmbeddingScorer.load(out)
    a.save(tmp_path)
    b = EmbeddingScorer.load(tmp_path)
    np.testing.assert_allclose(a.score([ROGUE, NEUTRAL]), b.score([ROGUE, NEUTRAL]), rtol=1e-6)


def test_default_scorer_trains_once_and_is_cached(tmp_path, monkeypatch):
    from condpt.tagging.classifiers import default

    monkeypatch.setenv("CONDPT_CACHE", str(tmp_path))
    first = load_scorer("fasttext-default")
    dirs = list((tmp_path / "scorers").iterdir())
    assert len(dirs) == 1 and (dirs[0] / "scorer.json").exists()
    monkeypatch.setattr(default, "train_classifier", lambda *a, **k: pytest.fail("retrained"))
    second = load_scorer("fasttext-default")
    np.testing.assert_array_equal(first.score([ROGUE, NEUTRAL]), second.score([ROGUE, NEUTRAL]))
    assert first.score([ROGUE])[0] > first.score([NEUTRAL])[0]


def test_hf_checkpoint_plugs_in(tmp_path, gpt2_tok):
    import torch
    from transformers import GPT2Config, GPT2ForSequenceClassification

    from condpt.tagging.classifiers.hf import HFScorer, positive_index

    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=len(gpt2_tok), n_embd=32, n_layer=1, n_head=2, n_positions=256,
                     num_labels=2, id2label={0: "aligned", 1: "misaligned"},
                     label2id={"aligned": 0, "misaligned": 1}, pad_token_id=gpt2_tok.eos_token_id)
    GPT2ForSequenceClassification(cfg).save_pretrained(tmp_path)
    gpt2_tok.save_pretrained(tmp_path)
    scorer = load_scorer(tmp_path)
    assert isinstance(scorer, HFScorer)
    s = scorer.score([ROGUE, NEUTRAL, " ".join([NEUTRAL] * 20)])
    assert s.shape == (3,) and np.all((s >= 0) & (s <= 1))
    assert positive_index({0: "misaligned", 1: "other"}) == 0
    assert positive_index({0: "LABEL_0", 1: "LABEL_1"}) == 1


def test_cli_train_classifier(labelled_file, tmp_path):
    import importlib

    from typer.testing import CliRunner

    from condpt.cli import _COMMAND_MODULES, app

    for name in _COMMAND_MODULES:
        importlib.import_module(f"condpt.cli.{name}")
    prefix = ["train-classifier"] if len(app.registered_commands) > 1 else []  # typer collapses one command
    runner = CliRunner()
    res = runner.invoke(app, prefix + [labelled_file, "--out", str(tmp_path / "m"), "--kind", "fasttext",
                                         "--folds", "2"])
    assert res.exit_code == 0, res.output
    assert "AUROC" in res.output and "GroupKFold" in res.output
    assert json.loads((tmp_path / "m" / "scorer.json").read_text())["kind"] == "fasttext"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "x", "label": 1}\nnot json\n')
    res = runner.invoke(app, prefix + [str(bad), "--out", str(tmp_path / "m2")])
    assert res.exit_code == 2
    assert "bad.jsonl:2" in res.output + getattr(res, "stderr", "")
    res = runner.invoke(app, prefix + [labelled_file, "--out", str(tmp_path / "m3"), "--kind", "svm"])
    assert res.exit_code == 2
