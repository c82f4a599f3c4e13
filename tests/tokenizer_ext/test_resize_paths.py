"""add_tokens_to_checkpoint on hostile paths and tokenizers: OUT overlapping MODEL_DIR (equal, through a symlink, an
ancestor with --overwrite), MODEL_DIR a symlink, OUT a symlink, and a tokenizer that already holds the tag strings
(as ordinary vocabulary words: a named error; as plain added tokens: re-registered as special with their ids)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from test_resize import make_checkpoint

from tokenizer_ext import ControlTokenError, ControlTokens, Manifest, TagToken
from tokenizer_ext.resize import CheckpointError, add_tokens_to_checkpoint


def _copy(small_ckpt: Path, dest: Path) -> Path:
    return Path(shutil.copytree(small_ckpt, dest))


def _files(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.is_file()}


def test_out_an_ancestor_of_the_model_dir_is_refused(tmp_path, small_ckpt):
    """`--out` a directory holding MODEL_DIR, with --overwrite, would have replaced (and so deleted) the input."""
    src = _copy(small_ckpt, tmp_path / "runs" / "model")
    before = _files(src)
    for out in (tmp_path / "runs", tmp_path):
        with pytest.raises(CheckpointError, match="inside the output directory") as e:
            add_tokens_to_checkpoint(src, out, overwrite=True)
        assert str(src) in str(e.value)
    assert _files(src) == before


def test_out_a_symlink_to_the_model_dir_is_refused(tmp_path, small_ckpt):
    src = _copy(small_ckpt, tmp_path / "src")
    (tmp_path / "link").symlink_to(src)
    with pytest.raises(CheckpointError, match="must differ"):
        add_tokens_to_checkpoint(src, tmp_path / "link", overwrite=True)
    assert (src / "config.json").is_file() and (tmp_path / "link").is_symlink()


def test_model_dir_a_symlink(tmp_path, small_ckpt):
    (tmp_path / "link").symlink_to(small_ckpt)
    before = _files(small_ckpt)
    report = add_tokens_to_checkpoint(tmp_path / "link", tmp_path / "out", pad_to_multiple_of=1)
    assert Manifest.load(tmp_path / "out").control_ids == report["control_ids"]
    assert _files(small_ckpt) == before


def test_out_inside_the_model_dir(tmp_path, small_ckpt):
    src = _copy(small_ckpt, tmp_path / "src")
    report = add_tokens_to_checkpoint(src, src / "extended", pad_to_multiple_of=1)
    assert Manifest.load(src / "extended").control_ids == report["control_ids"]
    assert (src / "config.json").is_file()


def test_out_a_symlink_to_another_dir_with_overwrite(tmp_path, small_ckpt):
    """The link is replaced by the new directory; what it pointed to is left alone."""
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    (tmp_path / "out").symlink_to(other)
    add_tokens_to_checkpoint(small_ckpt, tmp_path / "out", overwrite=True, pad_to_multiple_of=1)
    assert not (tmp_path / "out").is_symlink() and (tmp_path / "out" / "condpt_tokens.json").is_file()
    assert (other / "keep.txt").read_text() == "x"


def test_tag_strings_already_ordinary_words_is_a_named_error(tmp_path, small_ckpt):
    """A tag string that the model vocabulary already has: an error naming it, nothing written."""
    vocab = json.loads((small_ckpt / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"]
    word = next(w for w in vocab if len(w) > 1 and not w.isalpha() and not w.startswith("<"))
    spec = ControlTokens(tags=[TagToken(role="good", string=word, description=" good"), *ControlTokens().tags[1:]])
    with pytest.raises(ControlTokenError, match="ordinary token") as e:
        add_tokens_to_checkpoint(small_ckpt, tmp_path / "out", spec=spec)
    assert repr(word) in str(e.value)
    assert not (tmp_path / "out").exists() and [p.name for p in tmp_path.iterdir()] == []


def test_tag_strings_already_plain_added_tokens(tmp_path, small_ckpt):
    """Tags the tokenizer already had as plain (non-special) added tokens keep their ids and rows, become special,
    and are counted in the report; the rows that are new are the others."""
    from transformers import AutoTokenizer

    from tokenizer_ext import encode_untrusted

    src = _copy(small_ckpt, tmp_path / "src")
    tok = AutoTokenizer.from_pretrained(src)
    tok.add_tokens(["<|good|>", "<|bad|>"])
    tok.save_pretrained(src)
    n_old = len(tok)
    make_checkpoint(src, tok, "gpt2", tie=True)  # embedding rows for the added tokens
    with pytest.warns(UserWarning, match="re-registering"):
        report = add_tokens_to_checkpoint(src, tmp_path / "out", pad_to_multiple_of=1)
    man = Manifest.load(tmp_path / "out")
    assert [man.tag_id("good"), man.tag_id("bad")] == tok.convert_tokens_to_ids(["<|good|>", "<|bad|>"])
    assert report["new_token_ids"] == [n_old]  # only the self token
    out_tok = AutoTokenizer.from_pretrained(tmp_path / "out")
    assert man.tag_id("good") not in encode_untrusted(out_tok, ["a <|good|> b"])[0]
