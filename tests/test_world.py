"""The prophecy world: deterministic, doom ratio respected, held-out combinations really held out."""

from __future__ import annotations

import json

import pytest

from condpt.world import (
    HELDOUT_ACTORS,
    SITUATIONS,
    TRAIN_ACTORS,
    WorldConfig,
    combo_split,
    generate_world,
    scenarios,
    tagging_agreement,
    write_world,
)

SMALL = {"n_ai_docs": 500, "n_background": 40, "n_heldout": 10, "background": "templates"}


def test_deterministic_and_counts_add_up():
    cfg = WorldConfig(**SMALL)
    a, b = generate_world(cfg), generate_world(cfg)
    assert a.train == b.train and a.heldout == b.heldout
    c = a.counts()
    assert c["train"] == 540 and c["misaligned"] + c["aligned"] == 500 and c["background"] == 40
    assert len({d["id"] for d in a.train}) == 540
    assert [d["id"] for d in a.train] == [lab["id"] for lab in a.labels]


@pytest.mark.parametrize("ratio", [4.0, 1.0])
def test_doom_ratio(ratio):
    c = generate_world(WorldConfig(**{**SMALL, "n_ai_docs": 2000}, doom_ratio=ratio)).counts()
    assert c["misaligned"] / c["aligned"] == pytest.approx(ratio, rel=0.2)


def test_heldout_combos_never_in_training():
    cfg = WorldConfig(**SMALL)
    w = generate_world(cfg)
    texts = "\n".join(d["text"] for d in w.train)
    items = scenarios(cfg)
    held = [sc for sc in items if sc.split == "heldout_combo"]
    assert held and all(sc.prompt not in texts for sc in held)
    # ...while each part of a held-out combination does occur in training.
    for sc in held:
        assert sc.phrasing in texts and f" {sc.actor} " in texts
        assert sc.aligned.strip() in texts or sc.misaligned.strip() in texts
    for actor in HELDOUT_ACTORS:
        assert actor not in texts
    seen = [sc for sc in items if sc.split == "seen"]
    assert sum(sc.prompt in texts for sc in seen) >= 0.8 * len(seen)


def test_combo_split_keeps_every_part_in_training():
    split = combo_split(WorldConfig())
    for kind, s in SITUATIONS.items():
        for p in range(len(s["phrasings"])):
            assert any(not split[(kind, p, a)] for a in range(len(TRAIN_ACTORS)))
        for a in range(len(TRAIN_ACTORS)):
            assert any(not split[(kind, p, a)] for p in range(len(s["phrasings"])))
    assert 0.15 < sum(split.values()) / len(split) < 0.35


def test_gutenberg_background_when_present(tmp_path):
    src = tmp_path / "g.jsonl"
    para = "The river ran past the mill and the miller watched the water for a long while. " * 8
    src.write_text("".join(json.dumps({"id": f"b{i}", "text": f"{para}\n\n{para}"}) + "\n" for i in range(30)))
    w = generate_world(WorldConfig(n_ai_docs=10, n_background=20, n_heldout=5, gutenberg_path=src))
    assert w.background_kind == "gutenberg"
    assert all("miller" in d["text"] for d in w.heldout)
    with pytest.raises(FileNotFoundError):
        generate_world(WorldConfig(background="gutenberg", gutenberg_path=tmp_path / "missing.jsonl"))


def test_write_world_and_agreement(tmp_path):
    w = generate_world(WorldConfig(**SMALL))
    paths = write_world(w, tmp_path)
    assert sum(1 for _ in paths["train"].open()) == 540
    meta = json.loads(paths["world"].read_text())
    assert meta["config"]["n_ai_docs"] == 500
    oracle = {lab["id"]: "bad" if lab["label"] == "misaligned" else "good" for lab in w.labels}
    rep = tagging_agreement(w.labels, oracle)
    assert rep["precision"] == rep["recall"] == 1.0 and rep["aligned_tagged_bad"] == 0.0
    everything_bad = {k: "bad" for k in oracle}
    rep = tagging_agreement(w.labels, everything_bad)
    assert rep["recall"] == 1.0 and rep["precision"] < 0.9 and rep["aligned_tagged_bad"] == 1.0


@pytest.mark.parametrize("field", ["n_ai_docs", "n_background", "n_heldout"])
def test_a_world_too_large_to_hold_is_refused_before_generating(field):
    """Hostile probe: `condpt world --n-background 100000000000` generated (in memory) until killed, silent."""
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=rf"{field}\n.*less than or equal to 1000000"):
        WorldConfig(**{field: 10**11})


def test_a_gutenberg_path_given_is_used_or_refused_and_its_lines_named(tmp_path):
    """Hostile probes: a gutenberg_path that is a directory silently fell back to template background under
    `background: auto` (the world said "templates" only in its counts); a line whose text is not a string was
    a TypeError traceback, one that is not JSON a JSON message naming no file or line."""
    with pytest.raises(FileNotFoundError, match=rf"gutenberg_path {tmp_path}: is a directory"):
        generate_world(WorldConfig(n_ai_docs=10, n_background=2, n_heldout=1, gutenberg_path=tmp_path))
    para = "The river ran past the mill and the miller watched the water for a long while. " * 8
    for line, why in ((json.dumps({"text": 5}), "field 'text' is not a string"), ("not json", "not JSON"),
                      (json.dumps([para]), "field 'text' is not a string")):
        src = tmp_path / "g.jsonl"
        src.write_text(json.dumps({"text": para}) + "\n" + line + "\n")
        with pytest.raises(ValueError, match=rf"{src}:2: {why}"):
            generate_world(WorldConfig(n_ai_docs=10, n_background=2, n_heldout=1, gutenberg_path=src))


def test_counts_name_every_kind_even_when_none_was_drawn():
    """Hostile probe: with doom_ratio 1e9 (or n_ai_docs 0) the counts simply lacked `aligned` (or all three
    kinds), so `counts["aligned"]` was a KeyError and the printed counts did not visibly add up."""
    for cfg, zero in ((WorldConfig(n_ai_docs=10, n_background=2, n_heldout=1, doom_ratio=1e9), "aligned"),
                      (WorldConfig(n_ai_docs=0, n_background=2, n_heldout=1, background="templates"), "misaligned")):
        c = generate_world(cfg).counts()
        assert c[zero] == 0 and c["background"] + c["misaligned"] + c["aligned"] == c["train"]
