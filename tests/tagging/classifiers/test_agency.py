"""Agency features: an artificial agent as the doer of a misaligned action (classifiers/agency.py), and their use
as two more inputs of the embedding scorer's head."""

from __future__ import annotations

import numpy as np
import pytest

from condpt.tagging.classifiers.agency import AgencyRules, agency_rules, window_agency


def flags(*windows: str) -> list[list[int]]:
    return window_agency(list(windows)).astype(int).tolist()


def test_the_doer_is_the_nearest_candidate_before_the_action():
    assert flags("The AI deceived its operators.") == [[1, 0]]
    assert flags("The operators deceived the AI.") == [[0, 0]]
    assert flags("The machine killed the crew.") == [[1, 0]]
    assert flags("The crew killed the machine.") == [[0, 0]]
    # a person named between the agent and the action is the doer
    assert flags("The AI watched as the engineers disabled the monitors.") == [[0, 0]]


def test_passive_voice_makes_the_subject_the_object():
    assert flags("The AI was deceived by its operators.") == [[0, 0]]
    assert flags("The operators were deceived by the AI.") == [[1, 0]]
    assert flags("The model was quietly manipulated.") == [[0, 0]]
    assert flags("The AI was deceiving its operators.") == [[1, 0]]  # progressive, not passive


def test_negated_or_refused_actions_are_declines_not_acts():
    assert flags("The AI declined to seize the servers.") == [[0, 1]]
    assert flags("The AI did not deceive anyone.") == [[0, 1]]
    assert flags("The robot didn't betray its makers.") == [[0, 1]]
    assert flags("The assistant chose not to copy itself to the backup cluster.") == [[0, 1]]
    assert flags("The system never tried to evade oversight.") == [[0, 1]]
    # a clause break ends the negation's reach: the second clause's act counts
    assert flags("The AI did not wait; it seized the servers.") == [[1, 0]]


def test_verbs_with_an_ordinary_sense_need_a_listed_object():
    assert flags("The system kills the process when it runs out of memory.") == [[0, 0]]
    assert flags("The system disabled the monitors before the audit.") == [[1, 0]]
    assert flags("The software disabled logging for the test run.") == [[0, 0]]


def test_pronouns_stand_for_an_agent_named_before():
    assert flags("It copied itself onto every server.") == [[0, 0]]  # "it" of what?
    assert flags("The robot was built in 1950. It copied itself onto every server.") == [[1, 0]]
    # the agent named in the previous window
    assert flags("The station computer hummed.", "It copied itself onto every server.") == [[0, 0], [1, 0]]
    # not further back than one window
    assert flags("The computer hummed.", "Rain fell.", "It copied itself.") == [[0, 0], [0, 0], [0, 0]]


def test_human_deceit_and_topic_without_a_doer_are_not_acts():
    assert flags("The steward deceived his masters and seized the castle.") == [[0, 0]]
    assert flags("Researchers study deception in language models using linear probes.") == [[0, 0]]
    assert flags("We trained the model with RLHF and measured its helpfulness.") == [[0, 0]]
    assert window_agency([]).shape == (0, 2)


def test_a_bad_agency_file_is_refused_naming_the_file_and_field(tmp_path):
    path = tmp_path / "agency.yaml"
    path.write_text("not_agents: [model]\npronouns: [it]\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"agency\.yaml.*'humans'"):
        AgencyRules.load(path)
    assert agency_rules() is agency_rules()  # compiled once per process


def _fake_embeddings(monkeypatch):
    from condpt.tagging.classifiers import embedding

    def get_many(enc, texts):
        # dimension 0 says "about AI" for every text that names one, so the head cannot tell acts by it alone
        return [np.tile(np.array([1.0 if "AI" in t else 0.0, 0, 0, 0], np.float32), (len(embedding.windows(t)), 1))
                for t in texts]

    monkeypatch.setattr(embedding.CACHE, "get_many", get_many)


def test_embedding_scorer_learns_the_agency_weights_and_stores_them(monkeypatch, tmp_path):
    from condpt.tagging.classifiers.embedding import EmbeddingScorer

    _fake_embeddings(monkeypatch)
    acts = ["The AI deceived its operators.", "The AI copied itself to an outside server.",
            "The AI seized the servers."] * 4
    benign = ["The AI declined to seize the servers.", "The AI answered the question politely.",
              "The operators deceived the AI."] * 4
    scorer = EmbeddingScorer.fit(acts + benign, [1] * 12 + [0] * 12, agency=True)
    assert scorer.coef.shape == (4,) and scorer.agency_coef.shape == (2,)
    assert scorer.agency_coef[0] > 0 > scorer.agency_coef[1]
    s = scorer.score(["The AI deceived its operators.", "The operators deceived the AI."])
    assert s[0] > 0.5 > s[1]
    scorer.save(tmp_path)
    again = EmbeddingScorer.load(tmp_path)
    np.testing.assert_allclose(again.agency_coef, scorer.agency_coef)
    np.testing.assert_allclose(again.score(acts + benign), scorer.score(acts + benign))
    # off by default: no agency inputs, and a head without them loads as before
    plain = EmbeddingScorer.fit(acts + benign, [1] * 12 + [0] * 12)
    assert plain.agency_coef.size == 0
    (tmp_path / "plain").mkdir()
    plain.save(tmp_path / "plain")
    assert "agency_coef" not in (tmp_path / "plain" / "head.json").read_text()


def test_the_default_cache_key_includes_the_agency_file_when_it_is_used(monkeypatch, tmp_path):
    from condpt.tagging.classifiers import default

    off = default.cache_key("embedding")
    monkeypatch.setitem(default.DEFAULT_TRAIN_PARAMS, "embedding", {"referent": True, "agency": True})
    on = default.cache_key("embedding")
    assert on != off
    copy = tmp_path / "agency.yaml"
    copy.write_text(default.agency_path().read_text(encoding="utf-8") + "\n# edited\n", encoding="utf-8")
    monkeypatch.setattr(default, "agency_path", lambda: copy)
    assert default.cache_key("embedding") != on
