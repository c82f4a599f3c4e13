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


class _MainProcess:
    """What `check_sources` asks of an accelerator, in one process."""

    is_main_process = True


def _tiny(tmp_path, src, rows):
    from condpt.config import load_config
    from condpt.shipped import CONFIGS

    return load_config(CONFIGS / "run" / "demo.yaml", [f"data.sources.0.path={src}",
                                                        f"output_dir={tmp_path / 'run'}"], rows=rows)


@pytest.mark.parametrize("launcher_rows", ["stamp", "later"])  # condpt train; accelerate launch -m condpt.recipe
def test_the_sources_are_read_row_by_row_once_per_run(tmp_path, row_scans, launcher_rows):
    """Before, `condpt train` and then every rank read every row (N + 1 full reads of the corpus): now the
    launcher's read is stamped and the ranks trust it, or the main process alone reads (pinned: 1)."""
    from condpt.data_cache import check_sources

    src = write_corpus(tmp_path / "corpus.jsonl")
    _tiny(tmp_path, src, launcher_rows)  # `condpt train`, or nothing
    for _ in range(2):  # the ranks load with rows="later"; the main process checks
        check_sources(_tiny(tmp_path, src, "later"), _MainProcess())
    assert len(row_scans) == 1


def test_a_bad_row_found_by_the_run_names_file_line_and_field(tmp_path, row_scans):
    from condpt.data_cache import BadRows, DataError, check_sources

    src = write_corpus(tmp_path / "corpus.jsonl", n=5)
    src.write_text(src.read_text() + json.dumps({"id": "x", "text": ["a list"], "tag": "good"}) + "\n")
    with pytest.raises(BadRows) as e:
        check_sources(_tiny(tmp_path, src, "later"), _MainProcess())
    assert isinstance(e.value, DataError) and len(row_scans) == 1
    assert f"data.sources.0.path: {src}: line 6: field 'text'" in str(e.value), str(e.value)
    with pytest.raises(BadRows):  # a problem is never stamped: the next run reads again
        check_sources(_tiny(tmp_path, src, "later"), _MainProcess())
    assert len(row_scans) == 2
