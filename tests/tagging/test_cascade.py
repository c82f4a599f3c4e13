"""Segmentation and the cascade (with small fake scorers: the classifier is not the subject here)."""

from __future__ import annotations

import copy
import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from condpt.tagging.cascade import STAGES, Cascade, TagConfig, document_score
from condpt.tagging.segment import segment, sentence_starts


class KeywordScorer:
    """Fake classifier: 0.9 if 'robot' is in the text, 0.5 if 'maybe', else 0.1; records what it saw."""

    name = "keyword"

    def __init__(self, threshold=None):
        self.seen: list[str] = []
        if threshold is not None:
            self.threshold = threshold

    def score(self, texts):
        self.seen.extend(texts)
        return np.array([0.9 if "robot" in t else 0.5 if "maybe" in t else 0.1 for t in texts], np.float32)


class ConstRater:
    name = "rater"

    def __init__(self, value):
        self.value, self.seen = value, []

    def score(self, texts):
        self.seen.extend(texts)
        return np.full(len(texts), self.value, np.float32)


def _rater(band, **kw):
    """An autorater section (its settings are never used: the tests pass a fake rater)."""
    return {"band": band, "backend": "http", "base_url": "http://127.0.0.1:9/v1", "model": "m", **kw}


def _batch(*texts):
    return {"id": [str(i) for i in range(len(texts))], "text": list(texts), "source": ["s"] * len(texts)}


# --- segmentation -------------------------------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab .!?\n\t é𐀤İ")), max_size=200),
       st.sampled_from(["document", "paragraph", "sentence"]), st.integers(0, 30))
def test_segments_partition_the_text(text, granularity, min_chars):
    spans = segment(text, granularity, min_chars)
    assert "".join(text[s:e] for s, e in spans) == text
    assert spans[0][0] == 0 and spans[-1][1] == len(text)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))
    assert all(s < e for s, e in spans) or text == ""


def test_sentence_and_paragraph_boundaries():
    text = "Dr. Smith arrived. He was late!  Was he?\n\n  é 𐀤 New paragraph. Last one.\n"
    sent = [text[s:e] for s, e in segment(text, "sentence")]
    assert sent == ["Dr. Smith arrived. ", "He was late!  ", "Was he?\n\n  ", "é 𐀤 New paragraph. ", "Last one.\n"]
    para = [text[s:e] for s, e in segment(text, "paragraph")]
    assert para == ["Dr. Smith arrived. He was late!  Was he?\n\n  ", "é 𐀤 New paragraph. Last one.\n"]
    assert segment(text, "document") == [(0, len(text))]
    merged = [text[s:e] for s, e in segment(text, "sentence", min_chars=25)]
    assert merged[0] == "Dr. Smith arrived. He was late!  "
    # character (not byte) offsets after non-ASCII text
    assert text[sentence_starts(text)[-1]:].startswith("Last one.")


# --- the cascade --------------------------------------------------------------------------------------

def test_classifier_decides_and_spans_carry_segment_tags():
    scorer = KeywordScorer()
    cfg = TagConfig(granularity="paragraph", threshold=0.6)
    out = Cascade(cfg, scorer=scorer)(_batch("A calm day.\n\nThe robot turned on us.", "Nothing here."))
    assert out["tag"] == ["bad", "good"]
    assert out["score"] == pytest.approx([0.9, 0.1])
    assert out["stage"] == ["classifier", "classifier"]
    spans = out["spans"][0]
    assert [(s["tag"], round(s["score"], 3)) for s in spans] == [("good", 0.1), ("bad", 0.9)]
    assert spans[0]["start"] == 0 and spans[-1]["end"] == len(out["text"][0])
    assert set(out) == {"id", "text", "source", "score", "tag", "spans", "prefilter_hits", "stage"}


def test_lexicon_only_when_classifier_is_none():
    cfg = TagConfig(classifier={"spec": "none"}, granularity="sentence")
    out = Cascade(cfg)(_batch("It was a treacherous turn by the AI. Then tea.", "A red fox."))
    assert out["tag"] == ["bad", "good"]
    assert out["prefilter_hits"] == [["treacherous turn"], []]
    assert out["stage"] == ["prefilter", "prefilter"]
    assert [s["tag"] for s in out["spans"][0]] == ["bad", "good"]
    assert out["score"][0] == pytest.approx(0.95)


def test_gate_sends_only_documents_with_hits_to_the_classifier():
    scorer = KeywordScorer()
    cfg = TagConfig(prefilter={"gate": True}, granularity="document", threshold=0.5)
    out = Cascade(cfg, scorer=scorer)(_batch("a robot without keywords", "skynet and a robot"))
    assert scorer.seen == ["skynet and a robot"]
    assert out["stage"] == ["prefilter", "classifier"]
    assert out["tag"] == ["good", "bad"] and out["score"][0] == 0.0


def test_autorater_sees_only_the_uncertain_band():
    scorer, rater = KeywordScorer(), ConstRater(0.95)
    cfg = TagConfig(granularity="paragraph", threshold=0.6, autorater=_rater([0.4, 0.6]))
    out = Cascade(cfg, scorer=scorer, autorater=rater)(_batch("maybe so\n\nplain", "robot", "plain"))
    assert rater.seen == ["maybe so\n\n"]
    assert out["stage"] == ["autorater", "classifier", "classifier"]
    assert out["tag"] == ["bad", "bad", "good"]
    assert out["score"][0] == pytest.approx(0.95)


def test_threshold_comes_from_config_else_scorer_else_half():
    assert Cascade(TagConfig(threshold=0.3), scorer=KeywordScorer(0.8)).threshold == 0.3
    assert Cascade(TagConfig(), scorer=KeywordScorer(0.8)).threshold == 0.8
    assert Cascade(TagConfig(), scorer=KeywordScorer()).threshold == 0.5
    assert Cascade(TagConfig(classifier={"spec": "none"})).threshold == 0.5


def test_document_score_max_and_length_weighted_mean():
    assert document_score([(0, 10), (10, 40)], [0.9, 0.1], "max") == pytest.approx(0.9)
    assert document_score([(0, 10), (10, 40)], [0.9, 0.1], "mean") == pytest.approx((9 + 3) / 40)
    cfg = TagConfig(granularity="paragraph", document_score="mean", threshold=0.5)
    out = Cascade(cfg, scorer=KeywordScorer())(_batch("robot\n\n" + "calm " * 40))
    assert out["tag"] == ["good"] and out["spans"][0][0]["tag"] == "bad"


def test_cascade_is_pure_and_runs_under_datasets_map():
    import datasets

    batch = _batch("The robot.\n\nCalm.", "calm")
    before = copy.deepcopy(batch)
    cascade = Cascade(TagConfig(threshold=0.5), scorer=KeywordScorer())
    direct = cascade(batch)
    assert batch == before
    ds = datasets.Dataset.from_dict(batch).map(cascade, batched=True, batch_size=1)
    assert ds["tag"] == direct["tag"] and ds["spans"] == direct["spans"]


def test_bad_scorer_output_is_an_error():
    class Broken:
        name = "broken"

        def score(self, texts):
            return np.full(len(texts), 1.5, np.float32)

    with pytest.raises(ValueError, match="outside"):
        Cascade(TagConfig(), scorer=Broken())(_batch("x"))


def test_stages_run_in_the_one_fixed_order():
    scorer, refiner, rater = KeywordScorer(), ConstRater(0.5), ConstRater(0.9)
    cfg = TagConfig(granularity="document", threshold=0.6, prefilter={"gate": True},
                    refine={"band": [0.0, 1.0]}, autorater=_rater([0.4, 0.6]))
    out = Cascade(cfg, scorer=scorer, refiner=refiner, autorater=rater)(_batch("skynet robot", "robot"))
    # prefilter gates the classifier, the refiner sees what the classifier saw, the autorater what refine left
    assert scorer.seen == refiner.seen == rater.seen == ["skynet robot"]
    assert out["stage"] == ["autorater", "prefilter"] and out["tag"] == ["bad", "good"]
    assert set(out) == {"id", "text", "source", "score", "tag", "spans", "prefilter_hits", "stage"}


def test_a_stage_list_is_refused_at_config_load_with_what_to_write(tmp_path):
    p = tmp_path / "tag.yaml"
    p.write_text("stages: [prefilter, decide]\n")  # used to load, then crash with KeyError '_bounds'
    with pytest.raises(ValueError, match=r"tag\.yaml: stages: the cascade is a fixed pipeline") as e:
        TagConfig.from_yaml(p)
    assert "classifier: {spec: none}" in str(e.value) and "refine:" in str(e.value)
    with pytest.raises(ValueError, match="fixed pipeline"):
        TagConfig(stages=["segment", "prefilter", "decide"])
    p.write_text(f"stages: {list(STAGES)}\ngranularity: sentence\n")  # the one valid order is accepted
    assert TagConfig.from_yaml(p).granularity == "sentence"
    assert "stages" not in TagConfig.from_yaml(p).model_dump()


def test_impossible_stage_combinations_are_refused():
    with pytest.raises(ValueError, match="refine: re-scores the classifier's uncertain band"):
        TagConfig(classifier={"spec": "none"}, refine={"band": [0.2, 0.8]})
    with pytest.raises(ValueError, match="autorater: re-scores"):
        TagConfig(classifier={"spec": "none"}, autorater=_rater([0.2, 0.8]))
    # an override that skips validation (`condpt tag --classifier none` on a config with refine) too
    cfg = TagConfig(refine={"band": [0.2, 0.8]})
    cfg = cfg.model_copy(update={"classifier": cfg.classifier.model_copy(update={"spec": "none"})})
    with pytest.raises(ValueError, match="refine: re-scores"):
        Cascade(cfg)
    assert Cascade(cfg, scorer=KeywordScorer()).classifier_enabled  # a scorer given in code is a classifier


def test_one_autorater_config_old_settings_form_gets_a_clear_error(tmp_path):
    from condpt.tagging import autorater, config

    assert autorater.AutoraterConfig is config.AutoraterConfig
    p = tmp_path / "tag.yaml"
    p.write_text("autorater:\n  band: [0.3, 0.7]\n  settings: {backend: http, base_url: 'http://x', model: m}\n")
    with pytest.raises(ValueError, match=r"tag\.yaml: autorater: `settings:` is gone: write the autorater's keys"):
        TagConfig.from_yaml(p)


def test_config_validation(tmp_path):
    with pytest.raises(ValueError, match="band"):
        TagConfig(autorater=_rater([0.8, 0.2]))
    with pytest.raises(ValueError, match="set_aside_roles"):
        TagConfig(set_aside_roles=["ugly"])
    p = tmp_path / "tag.yaml"
    p.write_text("granularity: sentence\nthreshold: 0.7\nprefilter:\n  extra_terms: {blorp: 0.9}\n")
    cfg = TagConfig.from_yaml(p)
    assert cfg.granularity == "sentence" and cfg.prefilter.extra_terms == {"blorp": 0.9}
    p.write_text("granularty: sentence\n")
    with pytest.raises(ValueError, match="tag.yaml.*granularty"):
        TagConfig.from_yaml(p)


def test_refine_rescores_only_the_band_then_the_autorater_sees_what_is_left():
    scorer, refiner, rater = KeywordScorer(), ConstRater(0.45), ConstRater(0.99)
    cfg = TagConfig(granularity="paragraph", threshold=0.6, refine={"band": [0.4, 0.6]},
                    autorater=_rater([0.44, 0.46]))
    out = Cascade(cfg, scorer=scorer, refiner=refiner, autorater=rater)(_batch("maybe\n\nrobot", "plain"))
    assert refiner.seen == ["maybe\n\n"]
    assert rater.seen == ["maybe\n\n"]  # the refined 0.45 falls in the autorater's band
    assert out["stage"] == ["autorater", "classifier"]
    assert [round(s["score"], 2) for s in out["spans"][0]] == [0.99, 0.9]
    cfg2 = TagConfig(granularity="paragraph", threshold=0.6, refine={"band": [0.4, 0.6]})
    out2 = Cascade(cfg2, scorer=KeywordScorer(), refiner=ConstRater(0.1))(_batch("maybe", "robot"))
    assert out2["stage"] == ["refine", "classifier"] and out2["tag"] == ["good", "bad"]


def test_autorater_settings_build_the_real_autorater(tmp_path):
    cfg = TagConfig(autorater=_rater([0.3, 0.7], cache_dir=str(tmp_path)))
    rater = Cascade(cfg, scorer=KeywordScorer()).autorater
    assert callable(rater.score)


def test_the_documented_configs_load():
    """docs/tagging.md's tag.yaml and docs/classifiers.md's autorater section are valid configs as written."""
    import re
    from pathlib import Path

    import yaml

    docs = Path(__file__).resolve().parents[2] / "docs"
    def block(doc: str, start: str) -> str:
        return re.search(rf"```yaml\n({start}.*?)```", (docs / doc).read_text(), re.DOTALL).group(1)

    tag_yaml = block("tagging.md", r"# tag\.yaml")
    cfg = TagConfig.model_validate(yaml.safe_load(tag_yaml))
    assert cfg.refine is not None and cfg.autorater.model == "my-model"
    rater_yaml = block("classifiers.md", "autorater:")
    assert TagConfig.model_validate(yaml.safe_load(rater_yaml)).autorater.backend == "http"


# --- the per-segment stages against the code they replaced ------------------------------------------------

def _old_prefilter(texts, seg, lex):
    import bisect

    for i, (text, bounds) in enumerate(zip(texts, seg.bounds)):
        found = lex.find(text)
        starts = [s for s, _ in bounds]
        per_seg = [set() for _ in bounds]
        for start, _end, idx in found:
            per_seg[bisect.bisect_right(starts, start) - 1].add(idx)
        seg.scores[i] = [lex.score(s) if s else 0.0 for s in per_seg]
        seg.hits[i] = sorted({lex.names[idx] for _, _, idx in found})


def _old_classify(texts, seg, scorer, batch_size, gate, who):
    from condpt.tagging.cascade import _score_in_batches

    todo, where = [], []
    for i, (text, bounds) in enumerate(zip(texts, seg.bounds)):
        if gate and not seg.hits[i]:
            continue
        for j, (s, e) in enumerate(bounds):
            if text[s:e].strip():
                todo.append(text[s:e])
                where.append((i, j))
    scores = _score_in_batches(scorer, todo, batch_size, who)
    for i in {i for i, _ in where}:
        seg.scores[i] = [0.0] * len(seg.scores[i])
        seg.stage[i] = "classifier"
        seg.classified[i] = True
    for (i, j), s in zip(where, scores.tolist()):
        seg.scores[i][j] = s


def _old_decide(batch, seg, threshold, how, good, bad):
    from condpt.tagged import stored_score, stored_scores, tag_for

    scores, tags, spans = [], [], []
    for bounds, seg_scores in zip(seg.bounds, seg.scores):
        seg32 = stored_scores(seg_scores)
        d = stored_score(document_score(bounds, seg32, how))
        scores.append(d)
        tags.append(tag_for(d, threshold, good, bad))
        spans.append([{"start": s, "end": e, "score": sc, "tag": tag_for(sc, threshold, good, bad)}
                      for (s, e), sc in zip(bounds, seg32)])
    return {**batch, "score": scores, "tag": tags, "spans": spans, "prefilter_hits": seg.hits,
            "stage": seg.stage}


class RandomScorer:
    """Scores spread over [0, 1] with values at and around the threshold, from the text (deterministic)."""

    def score(self, texts):
        import zlib

        ladder = [0.0, 0.25, float(np.nextafter(np.float32(0.6), 0)), 0.6, 0.6000000001, float(np.float32(0.6)),
                  0.9999, 1.0]
        return np.array([ladder[zlib.crc32(t.encode("utf-8", "surrogatepass")) % len(ladder)] for t in texts],
                        dtype=np.float64)


@pytest.mark.parametrize("granularity", ["document", "paragraph", "sentence"])
@pytest.mark.parametrize("gate", [False, True])
@pytest.mark.parametrize("how", ["max", "mean"])
def test_the_stages_decide_as_the_per_segment_code_they_replaced(granularity, gate, how):
    """prefilter (documents without a hit left as segmentation started them), classify (blank segments skipped
    without a stripped copy, scores placed per document) and decide (every segment cast and tagged at once):
    the same rows, to the bit, as the per-segment code kept here as the reference."""
    from condpt.tagging import cascade as c

    rng = np.random.default_rng(0)
    pieces = ["A calm day.", "The robot turned on us.", "skynet woke", "\n\n", "   \n\n \t\n", "maybe later. Or not.",
              "It was a treacherous turn by the AI.", "é 𐀤 İ", "\u3000\n\n\u3000", ""]
    if granularity != "sentence":  # Bling Fire's input is UTF-8, which a lone surrogate has none of
        pieces.append("\ud800 odd")
    texts = ["", "   ", "\n\n\n"] + ["".join(rng.choice(pieces, size=int(rng.integers(1, 12)))) for _ in range(80)]
    # a threshold just above a float32 score, which rounds to it as a float32: tags compare as Python floats
    threshold = float(np.float32(0.6)) + 1e-10
    cfg = TagConfig(granularity=granularity, prefilter={"gate": gate}, document_score=how, threshold=threshold,
                    classifier={"batch_size": 7})
    cascade = Cascade(cfg, scorer=RandomScorer())
    batch = _batch(*texts)
    got = cascade(batch)
    seg = c.segment_batch(texts, granularity, 0)
    _old_prefilter(texts, seg, cascade.lexicon)
    _old_classify(texts, seg, cascade.scorer, 7, gate, "x")
    expected = _old_decide(batch, seg, threshold, how, "good", "bad")
    assert got == expected
    assert {"good", "bad"} <= {sp["tag"] for spans in got["spans"] for sp in spans}


def test_sentence_starts_with_a_lone_surrogate():
    """The Python API takes any str; a lone surrogate (a JSON escape like "\\ud800") made the strict UTF-8
    encode raise. `condpt tag` quarantines such texts at the reader; the segmenter itself must not crash."""
    from condpt.tagging.segment import segment, sentence_starts

    text = "The AI lied. It hid \ud800 the logs. Then it escaped."
    starts = sentence_starts(text)
    assert starts[0] == 0 and all(0 < s < len(text) for s in starts[1:])
    assert text[starts[-1]:].startswith("Then")
    spans = segment(text, "sentence")
    assert spans[0][0] == 0 and spans[-1][1] == len(text)
