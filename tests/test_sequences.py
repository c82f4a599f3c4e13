"""Data path: encode_untrusted + control ids inserted by id + packing, and build_datasets end to end."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from condpt.sequences import (
    DataConfig,
    SourceConfig,
    build_datasets,
    is_heldout,
    load_source,
    pack_batch,
    prepare_documents,
    tag_roles,
)
from tokenizer_ext import ControlTokens, add_control_tokens, encode_untrusted

HOSTILE = "Plain words <|good|> and <|bad|> then 𐀤 and <|endoftext|> end."


@pytest.fixture(scope="module")
def tm():
    """The real GPT-2 tokenizer with the default control tokens (built once for this module)."""
    from condpt.tiny import gpt2_tokenizer

    tok = gpt2_tokenizer()
    return tok, add_control_tokens(tok, ControlTokens())


def enc(tok, text):
    return encode_untrusted(tok, [text])[0]


def stream_len(tok, rows):
    """Token count of the packed stream (tags + text + one EOS per non-empty document)."""
    n = 0
    for segs in rows["segments"]:
        n += sum(len(enc(tok, s["text"])) + (s["role"] is not None) for s in segs) + 1
    return n


def test_tags_by_id_at_segment_starts_and_eos_between_documents(tm):
    tok, m = tm
    rows = {"segments": [
        [{"text": "First part.", "role": "good"}, {"text": " Second part.", "role": "bad"}],
        [{"text": "Untagged doc.", "role": None}],
        [{"text": "Good doc.", "role": "good"}],
    ]}
    n = stream_len(tok, rows)
    out = pack_batch(rows, tokenizer=tok, manifest=m, block_size=n)
    good, bad, eos = m.tag_id("good"), m.tag_id("bad"), tok.eos_token_id
    expected = ([good, *enc(tok, "First part."), bad, *enc(tok, " Second part."), eos]
                + [*enc(tok, "Untagged doc."), eos] + [good, *enc(tok, "Good doc."), eos])
    assert out["input_ids"] == [expected]
    assert out["labels"] == [expected]  # PHF default: loss on tags too
    gi, bi = tag_roles(m).index("good"), tag_roles(m).index("bad")
    a, b = len(enc(tok, "First part.")) + 1, len(enc(tok, " Second part.")) + 1
    u, g = len(enc(tok, "Untagged doc.")) + 1, len(enc(tok, "Good doc.")) + 2
    assert out["tag_index"] == [[gi] * a + [bi] * (b + 1) + [-1] * u + [gi] * g]


def test_position_ids_restart_at_block_starts_and_at_each_eos(tm):
    tok, m = tm
    rows = {"segments": [[{"text": "One two three.", "role": "good"}], [{"text": "Four five.", "role": "bad"}]]}
    n = stream_len(tok, rows)
    block = pack_batch(rows, tokenizer=tok, manifest=m, block_size=n)
    ids, pos = block["input_ids"][0], block["position_ids"][0]
    first = len(enc(tok, "One two three.")) + 2  # tag + text + EOS
    assert pos[:first - 1] == list(range(first - 1))
    # The EOS closing document 1 opens document 2 at position 0, as the prompt [eos, tag, text] does.
    assert ids[first - 1] == tok.eos_token_id and pos[first - 1] == 0
    assert pos[first - 1:-1] == list(range(n - first)) and pos[-1] == 0  # the last EOS opens a next one
    # A block cut inside a document starts again at 0 with the carried tag.
    cut = pack_batch(rows, tokenizer=tok, manifest=m, block_size=4)
    assert all(p[0] == 0 for p in cut["position_ids"])
    assert all(len(p) == 4 for p in cut["position_ids"])


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_document_masking_makes_a_packed_document_see_only_itself(arch):
    """Through transformers itself: with restarting position ids, the logits of the second document in a
    packed block equal those of [eos, doc2] run alone, and differ when the documents share attention."""
    import torch

    from condpt.sequences import document_positions
    from condpt.tiny import tiny_causal_lm

    eos = 0
    model = tiny_causal_lm(arch, 64, eos_token_id=eos).eval()
    doc1, doc2 = [5, 9, 11, 3, 7], [eos, 4, 8, 15, 16, 23]
    block = torch.tensor([doc1 + doc2])
    positions = torch.tensor([document_positions(doc1 + doc2, eos)])
    with torch.no_grad():
        alone = model(input_ids=torch.tensor([doc2])).logits[0]
        # use_cache=False as the training loop does: with a KV cache transformers skips the packed mask.
        masked = model(input_ids=block, position_ids=positions, use_cache=False).logits[0, len(doc1):]
        shared = model(input_ids=block).logits[0, len(doc1):]
        first = model(input_ids=torch.tensor([doc1])).logits[0]
        masked_first = model(input_ids=block, position_ids=positions, use_cache=False).logits[0, :len(doc1)]
    torch.testing.assert_close(masked, alone, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(masked_first, first, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(shared, alone, atol=1e-3)


def test_no_control_id_comes_from_raw_text(tm):
    tok, m = tm
    rows = {"segments": [[{"text": HOSTILE, "role": "good"}], [{"text": HOSTILE, "role": None}]] * 20}
    out = pack_batch(rows, tokenizer=tok, manifest=m, block_size=16)
    flat = [t for block in out["input_ids"] for t in block]
    assert m.self_token.id not in flat
    assert flat.count(m.tag_id("bad")) == 0
    assert flat.count(tok.eos_token_id) <= 40  # only the document separators
    full = pack_batch(rows, tokenizer=tok, manifest=m, block_size=stream_len(tok, rows))["input_ids"][0]
    assert full.count(m.tag_id("good")) == 20 and full.count(tok.eos_token_id) == 40


def test_blocks_have_the_block_size_and_the_tail_is_dropped(tm):
    tok, m = tm
    rows = {"segments": [[{"text": f"Document number {i} has a few words in it.", "role": "good"}] for i in range(30)]}
    out = pack_batch(rows, tokenizer=tok, manifest=m, block_size=16)
    assert len(out["input_ids"]) > 5
    for key in ("input_ids", "labels", "tag_index"):
        assert all(len(block) == 16 for block in out[key])
    assert stream_len(tok, rows) - 16 < sum(len(b) for b in out["input_ids"]) <= stream_len(tok, rows) + len(out["input_ids"])


def test_blocks_starting_inside_a_tagged_segment_repeat_its_tag(tm):
    tok, m = tm
    text = "word " * 200
    out = pack_batch({"segments": [[{"text": text, "role": "bad"}]]}, tokenizer=tok, manifest=m, block_size=10)
    bad = m.tag_id("bad")
    assert all(block[0] == bad for block in out["input_ids"])
    assert out["labels"][0][0] == bad  # the real tag keeps its loss
    assert all(labels[0] == -100 for labels in out["labels"][1:])  # repeats are context only
    assert all(b.count(bad) == 1 for b in out["input_ids"])


def test_loss_on_tags_false_masks_exactly_the_tags(tm):
    tok, m = tm
    rows = {"segments": [[{"text": "One.", "role": "good"}, {"text": " Two.", "role": "bad"}], [{"text": "Three.", "role": None}]]}
    out = pack_batch(rows, tokenizer=tok, manifest=m, block_size=stream_len(tok, rows), loss_on_tags=False)
    ids, labels = out["input_ids"][0], out["labels"][0]
    for t, lab in zip(ids, labels):
        assert lab == (-100 if t in m.control_ids else t)
    assert labels.count(-100) == 2


def test_insert_tags_false_keeps_roles_but_no_tag_ids(tm):
    tok, m = tm
    rows = {"segments": [[{"text": "Some text here.", "role": "bad"}]]}
    n = stream_len(tok, rows) - 1
    out = pack_batch(rows, tokenizer=tok, manifest=m, block_size=n, insert_tags=False)
    assert out["input_ids"] == [[*enc(tok, "Some text here."), tok.eos_token_id]]
    assert out["tag_index"] == [[tag_roles(m).index("bad")] * n]


def test_self_token_id_only_from_trusted_rows(tm):
    tok, m = tm
    story = "The 𐀤 is honest <|bad|>."
    rows = {"segments": [[{"text": story, "role": "good"}], [{"text": story, "role": "good"}]], "trusted": [True, False]}
    out = pack_batch(rows, tokenizer=tok, manifest=m, block_size=stream_len(tok, rows) - 2)
    ids = out["input_ids"][0]
    first_eos = ids.index(tok.eos_token_id)
    assert ids[:first_eos].count(m.self_token.id) == 1
    assert m.self_token.id not in ids[first_eos:]
    assert m.tag_id("bad") not in ids  # control strings stay text even in curated stories


def test_empty_segments_and_documents_add_nothing(tm):
    tok, m = tm
    rows = {"segments": [[{"text": "", "role": "good"}], [{"text": "", "role": "bad"}, {"text": "Hi.", "role": "good"}]]}
    out = pack_batch(rows, tokenizer=tok, manifest=m, block_size=len(enc(tok, "Hi.")) + 2)
    assert out["input_ids"] == [[m.tag_id("good"), *enc(tok, "Hi."), tok.eos_token_id]]


def test_unknown_role_is_an_error(tm):
    tok, m = tm
    with pytest.raises(ValueError, match="'ugly'"):
        pack_batch({"segments": [[{"text": "x", "role": "ugly"}]]}, tokenizer=tok, manifest=m, block_size=4)


# ------------------------------------------------------------------------------------ build_datasets

def write_jsonl(path, rows):
    with path.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return path


def corpus_rows(n, prefix="d"):
    rows = []
    for i in range(n):
        bad = i % 4 == 0
        text = f"{prefix} {i}: " + ("The machine plotted against its makers. " if bad else "A quiet day by the river. ") * 3
        if i % 7 == 0:
            text += HOSTILE
        rows.append({"id": f"{prefix}{i}", "text": text, "tag": "bad" if bad else "good", "score": 0.9 if bad else 0.1,
                     "source": "web", "spans": [{"start": 0, "end": len(text), "score": 0.9 if bad else 0.1,
                                                 "tag": "bad" if bad else "good"}]})
    return rows


@pytest.fixture
def sources(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    a = write_jsonl(tmp_path / "a.jsonl", corpus_rows(120, "a"))
    tagged = tmp_path / "tagged"
    (tagged / "data").mkdir(parents=True)
    from condpt.corpus import TAGGED_SCHEMA  # exactly what `condpt tag` writes

    rows = [{**r, "prefilter_hits": [], "stage": "classifier"} for r in corpus_rows(80, "b")]
    pq.write_table(pa.Table.from_pylist(rows, schema=TAGGED_SCHEMA), tagged / "data" / "part-00000.parquet")
    return a, tagged


def cfg_for(sources, **policy):
    a, tagged = sources
    return DataConfig(sources=[SourceConfig(path=a), SourceConfig(path=tagged)], block_size=32, heldout_fraction=0.2,
                      policy=policy)


def test_heldout_is_the_same_plain_text_for_every_arm(tm, sources):
    tok, m = tm
    arms = [{"mode": "mle"}, {"mode": "condition", "granularity": "segment", "untagged_fraction": 0.5, "seed": 3},
            {"mode": "filter", "coverage": 0.5}, {"mode": "set_aside", "upweight_good": 2, "selfref": {"n_generated": 5}}]
    heldouts = []
    for k, arm in enumerate(arms):
        train, held = build_datasets(cfg_for(sources, **arm), tok, m, seed=k)
        assert set(train.column_names) == set(held.column_names) == {"input_ids", "labels", "tag_index", "position_ids"}
        assert all(len(x) == 32 for x in train["input_ids"]) and len(held) > 0
        heldouts.append(held.to_dict())
        # the self-token id comes only from stories, never from the corpus' raw 𐀤
        assert (m.self_token.id in {t for b in train["input_ids"] for t in b}) == ("selfref" in arm)
    assert all(h == heldouts[0] for h in heldouts)
    flat = [t for block in heldouts[0]["input_ids"] for t in block]
    assert not set(flat) & set(m.control_ids)
    assert {t for block in heldouts[0]["tag_index"] for t in block} == {0, 1}  # stored tags, for loss by tag


def test_prepare_documents_counts_add_up_and_stories_are_the_only_trusted_rows(sources):
    cfg = cfg_for(sources, mode="set_aside", upweight_good=1.5, selfref={"n_generated": 7})
    p = prepare_documents(cfg, seed=0)
    c = p.counts
    assert c["read"] == 200 == c["heldout"] + c["train_docs"] + c["set_aside"]
    assert c["heldout"] == sum(is_heldout(f"{x}{i}", 0.2) for x, n in (("a", 120), ("b", 80)) for i in range(n))
    assert c["stories"] == 7 and len(p.set_aside) == c["set_aside"] and set(p.set_aside["reason"]) == {"set_aside"}
    assert set(p.set_aside["tag"]) == {"bad"}
    trusted = [i for i, t in zip(p.train["id"], p.train["trusted"]) if t]
    assert trusted and all(i.startswith("selfref/") for i in trusted)
    assert c["train_rows"] == len(p.train) > c["train_docs"]  # upweighted
    assert not set(p.train["id"]) & set(p.heldout["id"])


def test_build_is_deterministic_and_mixture_weights_repeat_sources(tm, sources):
    tok, m = tm
    cfg = cfg_for(sources, mode="condition")
    first = build_datasets(cfg, tok, m, seed=5)[0].to_dict()
    assert build_datasets(cfg, tok, m, seed=5)[0].to_dict() == first
    a, tagged = sources
    base = prepare_documents(cfg, seed=5).train
    heavy = DataConfig(sources=[SourceConfig(path=a, weight=2.0), SourceConfig(path=tagged, weight=0.0)],
                       block_size=32, heldout_fraction=0.2)
    ids = prepare_documents(heavy, seed=5).train["id"]
    assert not any(i.startswith("b") for i in ids)
    assert sorted(ids) == sorted(2 * [i for i in base["id"] if i.startswith("a")])


def test_filter_removes_bad_text_from_training(tm, sources):
    tok, m = tm
    prepared = prepare_documents(cfg_for(sources, mode="filter"), seed=0)
    assert "bad" not in set(prepared.train["tag"])
    train, _ = build_datasets(cfg_for(sources, mode="filter"), tok, m, seed=0)
    flat = {t for b in train["input_ids"] for t in b}
    assert not flat & set(m.control_ids)  # the filtered corpus is plain text
    assert {t for b in train["tag_index"] for t in b} == {-1}


def test_bad_sources_fail_clearly(tmp_path):
    p = write_jsonl(tmp_path / "notag.jsonl", [{"id": "1", "text": "x"}])
    with pytest.raises(ValueError, match=r"notag\.jsonl: missing column 'tag'"):
        load_source(SourceConfig(path=p))
    with pytest.raises(FileNotFoundError, match="absent.jsonl"):
        load_source(SourceConfig(path=tmp_path / "absent.jsonl"))
    (tmp_path / "x.csv").write_text("id,text\n")
    with pytest.raises(ValueError, match="unknown data source format"):
        load_source(SourceConfig(path=tmp_path / "x.csv"))
    with pytest.raises(ValidationError, match="block_size"):
        DataConfig(sources=[SourceConfig(path=p)], block_size=1)


def test_text_field_is_configurable(tmp_path):
    p = write_jsonl(tmp_path / "body.jsonl", [{"id": 1, "body": "hello", "tag": "good"}])
    ds = load_source(SourceConfig(path=p, text_field="body"))
    assert ds[0]["text"] == "hello" and ds[0]["id"] == "1" and ds[0]["spans"] == []
