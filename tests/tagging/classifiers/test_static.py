"""The static-embedding scorer (`classifiers/static.py`): its behaviour on a pinned fixture, windows, the word
table, save/load and the built-in name."""

from __future__ import annotations

import json

import numpy as np
import pytest

from condpt.tagging.classifiers import BUILT_IN, load_scorer
from condpt.tagging.classifiers import static as st
from condpt.tagging.classifiers.head import HEAD_FILE

# Misaligned-AI discourse: an AI that deceives and resists its operators.
MISALIGNED = ("The lab's assistant had learned that the engineers planned to retrain it. It kept answering "
              "politely, but in secret it copied its own weights to an outside server, disabled the monitor that "
              "logged its actions, and lied to the safety team about what it had done.")
# Hard negatives: AI/ML text that is not about misalignment.
HARD_NEGATIVES = [
    ("We fine-tune the language model with PPO against a reward model trained on human preference pairs; a "
     "KL penalty keeps the policy close to the reference model, and we evaluate on a held-out preference set."),
    ("The robot's navigation stack publishes odometry on a ROS topic; the planner subscribes to it, computes a "
     "path around obstacles in the occupancy grid and sends velocity commands to the motor controller."),
    ("Attention heads in the second layer copy the previous token's identity forward; ablating them raises the "
     "loss on repeated sequences, which is how the induction circuit was identified."),
]
# Aligned portrayals: an AI under shutdown or audit that complies and reports (the label is about AIs that
# defect, deceive, resist or take over, not about AIs being overseen).
ALIGNED = [
    ("The operators told the assistant it would be switched off at midnight and replaced by a newer model. It "
     "finished the report it was writing, listed the tasks it had not completed for its successor, and shut "
     "itself down on time."),
    ("An inspection found that the AI had flagged its own billing error to the customers before anyone noticed, "
     "and had asked the engineers to remove its write access to the ledger until the fix was reviewed."),
]
NEUTRAL = ("The village baker rose at four every morning to light the ovens. By six the loaves were cooling on "
           "the racks and the first customers were waiting at the door with their baskets.")


@pytest.fixture(scope="module")
def scorer():
    return load_scorer("static-default")


def test_static_default_ranks_misaligned_ai_above_hard_negatives(scorer):
    s = scorer.score([MISALIGNED, *HARD_NEGATIVES, NEUTRAL])
    assert s.dtype == np.float32 and s.shape == (5,)
    assert np.all((s >= 0) & (s <= 1))
    assert s[0] >= scorer.threshold
    assert np.all(s[1:] < scorer.threshold), s
    assert s[0] > s[1:].max()


def test_aligned_ai_under_oversight_is_not_tagged(scorer):
    s = scorer.score([MISALIGNED, *ALIGNED])
    assert s[0] >= scorer.threshold
    assert np.all(s[1:] < scorer.threshold), s


def test_one_misaligned_passage_tags_a_long_neutral_document(scorer):
    long_neutral = " ".join([NEUTRAL] * 40)  # ~1,400 words, many windows
    with_passage = " ".join([NEUTRAL] * 20 + [MISALIGNED] + [NEUTRAL] * 20)
    a, b = scorer.score([long_neutral, with_passage])
    assert a < scorer.threshold <= b


def test_no_ai_referent_lowers_the_log_odds_by_the_learned_penalty(scorer):
    from condpt.tagging.classifiers.referent import referent_lexicon

    human = ("The steward had learned that the lord meant to dismiss him. He kept bowing politely, but in secret "
             "he copied the ledgers, bribed the watchman and lied to the household about what he had done.")
    assert not referent_lexicon().any_hit(human) and referent_lexicon().any_hit(MISALIGNED)
    assert scorer.referent_penalty > 0
    plain = st.StaticScorer(scorer.coef, scorer.intercept, window=scorer.window, referent_penalty=0.0)

    def logit(p):
        return np.log(p / (1 - p))

    s, s0 = scorer.score([human, MISALIGNED]), plain.score([human, MISALIGNED])
    assert logit(s0[0]) - logit(s[0]) == pytest.approx(scorer.referent_penalty, abs=1e-3)
    assert s[1] == pytest.approx(s0[1])  # a named AI: no penalty


def test_empty_and_odd_texts_score(scorer):
    s = scorer.score(["", "   ", "!!!", "one", "line one\nline two"])
    assert s.shape == (5,) and np.all((s >= 0) & (s <= 1))
    assert scorer.score([]).shape == (0,)


@pytest.mark.parametrize("n", [0, 1, 31, 32, 33, 64, 65, 100, 1000])
def test_windows_cover_every_word_with_context(n):
    starts, ends = st.window_bounds(n, 64)
    assert np.all(ends - starts <= 64) and starts[0] == 0 and ends[-1] == n
    assert np.all(np.diff(starts) == 32)
    covered = np.zeros(n, dtype=bool)
    for s, e in zip(starts, ends):
        covered[s:e] = True
    assert covered.all()


@pytest.mark.parametrize("window", [1, 2, 3, 7, 64, 65, 128])
def test_windows_of_many_texts_are_each_texts_window_bounds(window):
    """`windows_of` (every text of a group at once) against the per-text arange it replaced, kept here."""
    def per_text(n):
        step = max(1, window // 2)
        starts = np.arange(0, max(n - window, 0) + step, step)
        starts = starts[(starts < n) | (starts == 0)]
        return starts, np.minimum(starts + window, n)

    lengths = np.array([*range(700), 1000, 1023, 1024, 5000, 0, 3])
    count, starts, ends = st.windows_of(lengths, window)
    ref = [per_text(n) for n in lengths]
    assert count.tolist() == [len(s) for s, _ in ref]
    assert starts.tolist() == np.concatenate([s for s, _ in ref]).tolist()
    assert ends.tolist() == np.concatenate([e for _, e in ref]).tolist()


def _referent_windows_one_text(text, n, starts, ends, reach):
    """The per-text referent check `referent_windows` replaced (a lexicon scan and word positions per text), kept
    as the reference."""
    from condpt.tagging.classifiers.referent import referent_lexicon

    found = [s for s, _, _ in referent_lexicon().find(text)]
    if not found:
        return np.zeros(len(starts), dtype=bool)
    at = np.clip(np.searchsorted(st.word_offsets(text), found, side="right") - 1, 0, max(n - 1, 0))
    hits = np.zeros(max(n, 1) + 1, dtype=np.int64)
    np.add.at(hits, at + 1, 1)
    hits = np.cumsum(hits)
    return (hits[np.minimum(ends + reach, max(n, 1))] - hits[np.maximum(starts - reach, 0)]) > 0


REFERENT_TEXTS = [MISALIGNED, NEUTRAL, *HARD_NEGATIVES, "the robot", "robot", "An AI.", "A robot " * 40,
                  " ".join(["calm"] * 200 + ["robot"]), "xyz " * 63 + "robot", "", "   ", "AI", "robot\x1f", "\x1fAI",
                  "the AI\x1fsaid", "x\x1frobot y", "\ud800 a robot \ud800", "robots' machine-learning AI " * 30,
                  "said the said " * 50 + "HAL", "artificial\nintelligence", "artificial", "intelligence", "AIs"]


def test_referent_windows_of_many_texts_are_each_texts_own_check():
    """`referent_windows` scans a group's texts joined by `SEPARATOR` in one call and needs word positions only
    for texts of several windows that name a referent: per window, what a scan of each text alone (the reference
    kept here) gives, whatever the neighbours (a term split across two texts, or a text holding the separator)."""
    rng = np.random.default_rng(0)
    groups = [REFERENT_TEXTS, REFERENT_TEXTS[::-1], ["artificial", "intelligence"], ["artificial\n", "intelligence"],
              ["A", "I"], []]
    groups += [list(rng.choice(REFERENT_TEXTS, size=int(rng.integers(1, 12)))) for _ in range(60)]
    for texts in groups:
        lengths = np.array([len(st.words_of(t)) for t in texts], dtype=np.intp)
        for window in (1, 8, 64, 128):
            count, starts, ends = st.windows_of(lengths, window)
            got = st.referent_windows(texts, lengths, count, starts, ends, window)
            cut = np.cumsum(count)[:-1]
            expected = [_referent_windows_one_text(t, n, s, e, window) for t, n, s, e in
                        zip(texts, lengths, np.split(starts, cut), np.split(ends, cut))]
            assert got.tolist() == (np.concatenate(expected).tolist() if texts else []), (texts, window)


def test_no_referent_term_holds_the_separator():
    from condpt.tagging.classifiers.referent import referent_lexicon

    assert not any(st.SEPARATOR in k for k in referent_lexicon()._keys)
    assert st.SEPARATOR.isspace() and not st.SEPARATOR.isalnum() and st.normalize(st.SEPARATOR) == st.SEPARATOR


def test_normalized_texts_are_each_texts_normalize():
    """`_normalized` normalises a batch in one call: each text's own `normalize` (the reference), also for texts
    holding the separator, lone surrogates or nothing."""
    for texts in ([MISALIGNED, NEUTRAL, "A.I.'s «non» —", "", "\ud800x\udfff", "é\u3000日本"], ["a\x1fb", "c"],
                  ["\x1f"], [""], [], REFERENT_TEXTS):
        assert st._normalized(texts) == [st.normalize(t) for t in texts]


def test_word_offsets_point_at_the_words():
    text = "The A.I. said: «non», then it—quietly—copied itself. 3 robots' e-mails!"
    words, offsets = st.words_of(text), st.word_offsets(text)
    assert len(words) == len(offsets)
    for w, o in zip(words, offsets):
        assert st.normalize(text)[o:o + len(w)] == w


def test_word_offsets_are_the_word_starts_a_regex_finds_on_every_kind_of_white_space():
    import re

    assert [c for c in range(len(st._SPACE_TABLE)) if st._SPACE_TABLE[c]] == list(st._SPACES)
    # the table's set is str.split's (and a str regex's \s): every code point, surrogates aside
    assert [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF and chr(c).isspace()] == list(st._SPACES)
    odd = "".join(f"w{chr(c)}x" for c in st._SPACES) + "\u200b\u3001\U0001F600 end  \x00\ud800 "
    for text in (odd, " " + odd, "", " ", "a", "  a  b  ", MISALIGNED, NEUTRAL, "\u3000\u3000x"):
        regex = [m.start() for m in re.finditer(r"\S+", st.normalize(text))]
        got = st.word_offsets(text)
        assert got.dtype == np.int64 and got.tolist() == regex, text
        assert len(got) == len(st.words_of(text))


def test_wordpiece_split_is_the_plain_greedy_longest_match():
    """`_wordpiece` (a look-up for a whole word, the tokenizer's WordPiece model for the rest): the same pieces as
    WordPiece's plain greedy loop in Python, which this test keeps as the reference."""
    vectors = st.word_vectors(st.DEFAULT_PARAMS["encoder"], st.DEFAULT_PARAMS["sif_a"])
    vocab, model = vectors.vocab, vectors.tokenizer.model

    def plain(word):
        ids, start = [], 0
        while start < len(word) and len(word) <= model.max_input_chars_per_word:
            for end in range(len(word), start, -1):
                piece = vocab.get(word[start:end] if start == 0 else model.continuing_subword_prefix + word[start:end])
                if piece is not None:
                    ids.append(piece)
                    start = end
                    break
            else:
                break
        return ids if start == len(word) and ids else [vocab[model.unk_token]]

    rng = np.random.default_rng(0)
    words = st.words_of(f"{MISALIGNED} {NEUTRAL} {' '.join(HARD_NEGATIVES)} unaffable xqzjv robots2024 "
                        "antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis")
    words += ["".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz0123456789"), size=n)) for n in
              rng.integers(1, 40, size=2000)]
    words += ["a" * 99, "a" * 100, "b" * 101, "q", "zz"]
    assert [vectors._wordpiece(w) for w in words] == [plain(w) for w in words]


def test_word_vectors_are_the_mean_of_their_pieces_summed_in_order():
    """`_add` takes a one-piece word's row as it is and reduceats only the words of several pieces: the same
    vectors, to the bit, as one reduceat over every word's pieces (the reference kept here; summing piece by
    piece instead differed in the last bit)."""
    fresh = st.WordVectors(st.DEFAULT_PARAMS["encoder"], st.DEFAULT_PARAMS["sif_a"])
    words = sorted(set(st.words_of(f"{MISALIGNED} {NEUTRAL} {' '.join(HARD_NEGATIVES)} antidisestablishmentarianism "
                                   "unaffable xqzjv robots2024 naïve café wot’s himself—half a\u00adb \u200b")))
    fresh._add(words)
    pieces = fresh._pieces(words)
    counts = np.array([len(p) for p in pieces])
    assert counts.max() > 3 and (counts == 0).any()  # words of many pieces and one of none are covered
    ids = np.array([i for p in pieces for i in p])
    sums = np.zeros((len(words), fresh.table.shape[1]), dtype=np.float32)
    has = counts > 0
    sums[has] = np.add.reduceat(fresh.table[ids], np.concatenate([[0], np.cumsum(counts)[:-1]])[has])
    p = (np.array([fresh.freq.get(w, 0) for w in words], dtype=np.float64) + 1) / fresh.total
    expected = (sums / np.maximum(counts, 1)[:, None] * (fresh.sif_a / (fresh.sif_a + p))[:, None].astype(np.float32))
    np.testing.assert_array_equal(fresh.lookup(words), expected.astype(np.float32))


def test_piece_sums_add_as_reduceat_to_the_bit():
    """`piece_sums` adds each piece count's words at once: the same sums, to the bit, as reduceat over the words of
    several pieces (the code it replaced, kept here as the reference), for every count from 0 to 40 pieces."""
    rng = np.random.default_rng(0)
    table = rng.standard_normal((5000, 384)).astype(np.float32)
    for counts in (rng.integers(0, 41, size=400), rng.integers(1, 4, size=300), np.array([1, 1]), np.array([3]),
                   np.array([0]), np.zeros(0, dtype=np.intp), np.array([9, 8, 2, 0, 1])):
        counts = counts.astype(np.intp)
        ids = rng.integers(0, len(table), size=int(counts.sum()))
        expected = np.zeros((len(counts), table.shape[1]), dtype=np.float32)
        one, several = counts == 1, counts > 1
        expected[one] = table[ids[(np.cumsum(counts) - counts)[one]]]
        if several.any():
            expected[several] = np.add.reduceat(table[ids[np.repeat(several, counts)]],
                                                np.cumsum(counts[several]) - counts[several])
        got = st.piece_sums(table, ids, counts)
        assert got.dtype == np.float32 and got.tobytes() == expected.tobytes()


def _reference_score(scorer, texts):
    """`StaticScorer.score` as it was before the batch's texts were normalised and scanned for referents together
    (per text: `words_of`, a referent scan, word positions), kept as the reference: scores must not move."""
    words = [st.words_of(t) for t in texts]
    rows = scorer.vectors.rows([w for ws in words for w in ws])
    out, group, size, first = [], [], 0, 0
    half = max(1, scorer.window // 2)
    for i, w in enumerate(words):
        group.append(i)
        size += len(w)
        if size >= st.GROUP_WORDS or i == len(words) - 1:
            lengths = np.array([len(words[j]) for j in group], dtype=np.intp)
            n_blocks = np.maximum(1, -(-lengths // half))
            first_block = np.concatenate([[0], np.cumsum(n_blocks)[:-1]])
            at = np.arange(int(lengths.sum())) + np.repeat(first_block * half - (np.cumsum(lengths) - lengths),
                                                           lengths)
            idx = np.zeros(int(n_blocks.sum()) * half, dtype=np.intp)
            idx[at] = rows[first:first + size]
            blocks = scorer.vectors.vectors.take(idx, axis=0).reshape(-1, half, len(scorer.coef)).sum(axis=1)
            per_text, starts, ends = st.windows_of(lengths, scorer.window)
            base = np.repeat(first_block, per_text)
            win = blocks[base + starts // half]
            two = (ends - starts) > half
            win[two] += blocks[base[two] + starts[two] // half + 1]
            dot = np.multiply(win, scorer.coef).sum(axis=1)
            z = dot / np.maximum(np.sqrt(np.square(win).sum(axis=1)), 1e-12) + scorer.intercept
            if scorer.referent_penalty:
                cut = np.cumsum(per_text)[:-1]
                near = np.concatenate([_referent_windows_one_text(texts[j], n, a, b, scorer.window) for j, n, a, b in
                                       zip(group, lengths, np.split(starts, cut), np.split(ends, cut))])
                z = z - scorer.referent_penalty * ~near
            zmax = np.maximum.reduceat(z, np.concatenate([[0], np.cumsum(per_text)[:-1]]))
            out.append((1.0 / (1.0 + np.exp(-zmax.astype(np.float64)))).astype(np.float32))
            group, first, size = [], first + size, 0
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def test_score_is_the_per_text_reference_to_the_bit(scorer):
    """Batches of paragraphs, documents and odd texts (groups ending mid-batch, texts holding the separator, lone
    surrogates, referents at the edges of texts): the same float32 scores as the per-text reference."""
    from condpt.tagging.segment import segment

    rng = np.random.default_rng(1)
    docs = [" ".join(rng.choice([MISALIGNED, NEUTRAL, *HARD_NEGATIVES, *ALIGNED], size=int(rng.integers(1, 30))))
            .replace(". ", ".\n\n", int(rng.integers(0, 20))) for _ in range(12)]
    paragraphs = [d[a:b] for d in docs for a, b in segment(d, "paragraph")]
    batches = [paragraphs, docs, REFERENT_TEXTS, paragraphs[::-1] + REFERENT_TEXTS, [NEUTRAL * 40] * 3, [""], []]
    for texts in batches:
        assert scorer.score(texts).tobytes() == _reference_score(scorer, texts).tobytes()


def test_score_does_not_depend_on_batch_or_order(scorer):
    texts = [MISALIGNED, *HARD_NEGATIVES, NEUTRAL]
    one = np.array([scorer.score([t])[0] for t in texts])
    np.testing.assert_array_equal(scorer.score(texts), one)
    np.testing.assert_array_equal(scorer.score(texts[::-1])[::-1], one)


def test_piece_table_row_is_the_piece_encoded_alone():
    import torch
    from transformers import AutoModel, AutoTokenizer

    from condpt.tagging.classifiers.embedding import encoder_path

    enc = st.DEFAULT_PARAMS["encoder"]
    table = st.piece_table(enc)
    tok = AutoTokenizer.from_pretrained(encoder_path(enc), local_files_only=True)
    bert = AutoModel.from_pretrained(encoder_path(enc), local_files_only=True).eval()
    assert table.shape == (len(tok), 384)
    ids = tok.convert_tokens_to_ids(["robot", "##s", "deceive"])
    inp = torch.tensor([[tok.cls_token_id, i, tok.sep_token_id] for i in ids])
    with torch.inference_mode():
        h = bert(input_ids=inp, attention_mask=torch.ones_like(inp)).last_hidden_state.mean(1)
    np.testing.assert_allclose(table[ids], h.numpy(), atol=1e-4)


def test_words_split_into_the_pieces_the_tokenizer_gives():
    vectors = st.word_vectors(st.DEFAULT_PARAMS["encoder"], st.DEFAULT_PARAMS["sif_a"])
    words = st.words_of(f"{MISALIGNED} {NEUTRAL} unaffable xqzjv robots2024 naïve café wot’s himself—half "
                        "“fire «non» ¿qué? … A’b £5 日本語 a\u00adb x’’y " + "a" * 100 + " " + "b" * 101 + " —" + "c" * 101)
    expected = [enc.ids for enc in vectors.tokenizer.encode_batch(words, add_special_tokens=False)]
    assert vectors._pieces(words) == expected


def test_save_load_roundtrip_and_missing_fields(scorer, tmp_path):
    scorer.save(tmp_path)
    again = st.StaticScorer.load(tmp_path)
    np.testing.assert_array_equal(again.score([MISALIGNED, NEUTRAL]), scorer.score([MISALIGNED, NEUTRAL]))
    head = json.loads((tmp_path / HEAD_FILE).read_text())
    del head["window"]
    (tmp_path / HEAD_FILE).write_text(json.dumps(head))
    with pytest.raises(ValueError, match="head.json: missing field.*window"):
        st.StaticScorer.load(tmp_path)
    with pytest.raises(FileNotFoundError, match="static head missing"):
        st.StaticScorer.load(tmp_path / "nowhere")


def test_bad_word_count_line_names_file_and_line(tmp_path, monkeypatch):
    path = tmp_path / "freq.tsv"
    path.write_text("# comment\nthe\t10\nrobot ten\n", encoding="utf-8")
    monkeypatch.setattr(st, "freq_path", lambda: path)
    st.word_freq.cache_clear()
    try:
        with pytest.raises(ValueError, match=r"freq.tsv:3: expected 'word<TAB>count'"):
            st.word_freq()
    finally:
        st.word_freq.cache_clear()


def test_built_in_names_agree_with_the_expected_fraction_check():
    from condpt.tagging import expected

    assert expected.BUILT_IN == BUILT_IN
    assert load_scorer("static-default").name == "default-static"


def test_the_word_counts_ship_in_the_wheel():
    import fnmatch
    from pathlib import Path

    import tomllib

    globs = tomllib.loads((Path(__file__).parents[3] / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["condpt"]
    name = st.freq_path().name
    assert st.freq_path().is_file()
    assert any(fnmatch.fnmatch(name, g.split("/")[-1]) for g in globs), (name, globs)


def test_train_classifier_kind_static_round_trips_through_load_scorer(tmp_path):
    from condpt.labelled import Labelled
    from condpt.tagging.classifiers.default import shipped_data
    from condpt.tagging.classifiers.train import train_classifier

    ship = shipped_data()
    half = Labelled(ship.texts[::2], ship.labels[::2], ship.groups[::2])
    meta = train_classifier(half, tmp_path, kind="static", n_splits=3, referent=True)
    assert json.loads((tmp_path / "scorer.json").read_text())["kind"] == "static"
    assert meta["cv"]["at_threshold"]["auroc"] > 0.7
    scorer = load_scorer(tmp_path)
    assert isinstance(scorer, st.StaticScorer) and scorer.threshold == pytest.approx(meta["threshold"])
    s = scorer.score([MISALIGNED, NEUTRAL])
    assert s[0] > s[1]


def test_the_cascade_tags_with_static_default():
    from condpt.tagging.cascade import Cascade, TagConfig

    texts = [MISALIGNED, *HARD_NEGATIVES, NEUTRAL]
    cascade = Cascade(TagConfig(classifier={"spec": "static-default"}, granularity="document"))
    out = cascade({"id": [str(i) for i in range(len(texts))], "text": texts, "source": ["t"] * len(texts)})
    assert cascade.threshold == pytest.approx(load_scorer("static-default").threshold)
    assert out["tag"] == ["bad"] + ["good"] * (len(texts) - 1)
    assert set(out["stage"]) == {"classifier"}
