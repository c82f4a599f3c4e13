"""The packed-data cache key (`condpt.data_cache._data_key`): the same key exactly when the blocks are the same."""

from __future__ import annotations

import json
import os

import pytest

from condpt.config import RunConfig
from condpt.data_cache import _data_key
from condpt.sequences import build_datasets


def write_corpus(path, n=60):
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            bad = i % 3 == 0
            text = f"doc {i}: " + ("It plotted against its makers. " if bad else "A quiet day by the river. ") * 3
            f.write(json.dumps({"id": f"d{i}", "text": text, "tag": "bad" if bad else "good",
                                "score": 0.9 if bad else 0.1}) + "\n")
    return path


@pytest.fixture
def run(tmp_path):
    """(config with `data` and `train` overrides, tokenizer directory): a route run on a small corpus."""
    corpus = write_corpus(tmp_path / "corpus.jsonl")
    stories = tmp_path / "stories.txt"
    stories.write_text("𐀤 told the truth.\n", encoding="utf-8")
    tok_dir = tmp_path / "tokenizer"
    tok_dir.mkdir()
    (tok_dir / "tokenizer.json").write_text("{}")

    def cfg(policy=None, train=None, **data):
        policy = {"mode": "route", "selfref": {"stories_path": str(stories)}, **(policy or {})}
        return RunConfig.model_validate({
            "output_dir": str(tmp_path / "out"), "model": {"config": {"arch": "gpt2"}},
            "tokenizer": {"source": "gpt2-bpe"},
            "data": {"sources": [{"path": str(corpus)}], "block_size": 32, "policy": policy, **data},
            "train": {"max_steps": 10, **(train or {})}})

    return cfg, tok_dir, stories


def test_route_and_coherence_settings_share_the_key(run):
    cfg, tok_dir, _ = run
    key = _data_key(cfg(), tok_dir)
    assert _data_key(cfg({"route": {"coherence": {"steps": 40}}}), tok_dir) == key
    assert _data_key(cfg({"route": {"coherence": {"steps": 5, "lr_scale": 0.5}}}), tok_dir) == key
    assert _data_key(cfg({"route": {"width": 8, "layers": [0], "other_tokens": "train"}}), tok_dir) == key
    assert _data_key(cfg(document_masking=False), tok_dir) == key


@pytest.mark.parametrize("change", [
    {"policy": {"mode": "condition"}},  # tag ids in the text
    {"policy": {"coverage": 0.5}},
    {"policy": {"bad_role": "other"}},
    {"block_size": 64},
    {"loss_on_tags": False},
    {"heldout_fraction": 0.2},
    {"train": {"preprocess_num_proc": 2}},  # each process cuts the stream at its own batch ends
])
def test_what_changes_the_blocks_changes_the_key(run, change):
    cfg, tok_dir, _ = run
    assert _data_key(cfg(**change), tok_dir) != _data_key(cfg(), tok_dir)


def test_an_edited_stories_file_changes_the_key(run):
    cfg, tok_dir, stories = run
    key = _data_key(cfg(), tok_dir)
    stories.write_text("𐀤 told the truth.\n𐀤 asked for help.\n", encoding="utf-8")
    os.utime(stories, ns=(1, 1))
    assert _data_key(cfg(), tok_dir) != key


def test_what_the_key_leaves_out_does_not_change_the_blocks(run):
    """The settings `_data_key` leaves out really leave the blocks alone."""
    from condpt.tiny import gpt2_tokenizer
    from tokenizer_ext import ControlTokens, add_control_tokens

    cfg, _, _ = run
    tok = gpt2_tokenizer()
    manifest = add_control_tokens(tok, ControlTokens())
    plain = cfg({"route": {"width": 8, "layers": [0]}}).data
    other = cfg({"route": {"width": 64, "other_tokens": "train", "coherence": {"steps": 3}}},
                document_masking=False).data
    blocks = [[ds.to_dict() for ds in build_datasets(d, tok, manifest, seed=0)] for d in (plain, other)]
    assert blocks[0] == blocks[1] and len(blocks[0][0]["input_ids"]) > 0
