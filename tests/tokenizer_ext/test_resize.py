"""add_tokens_to_checkpoint / `condpt add-tokens` on tiny GPT-2, Llama, GPT-NeoX and Qwen2 checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from condpt.tiny import tiny_causal_lm
from tokenizer_ext import ControlTokens, Manifest, TagToken, encode_untrusted, load_tokenizer_with_manifest
from tokenizer_ext.resize import CheckpointError, add_tokens_to_checkpoint
from tokenizer_ext.sample_text import SAMPLE_TEXT


def make_checkpoint(path: Path, tokenizer, arch: str, *, tie: bool, dtype=torch.float32, seed: int = 0) -> Path:
    model = tiny_causal_lm(arch, len(tokenizer), d_model=32, n_layer=1, n_head=2, tie_word_embeddings=tie,
                           eos_token_id=tokenizer.eos_token_id, seed=seed).to(dtype)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _reload(path: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(path), dtype="auto").eval()


@torch.no_grad()
def _logits(model, ids):
    return model(input_ids=torch.tensor([ids])).logits[0].float()


CASES = [  # (arch, tied, tokenizer, dtype)
    ("gpt2", True, "gpt2", torch.float32),
    ("gpt2", False, "sentencepiece", torch.float32),
    ("llama", False, "sentencepiece", torch.float32),
    ("gpt_neox", True, "sentencepiece", torch.bfloat16),
    ("qwen2", False, "preloaded", torch.float32),
    ("qwen2", True, "sentencepiece", torch.float16),
]


@pytest.mark.parametrize("arch, tie, tok_name, dtype", CASES, ids=[f"{a}-{'tied' if t else 'untied'}-{k}-{str(d)[6:]}"
                                                                   for a, t, k, d in CASES])
def test_add_tokens_checkpoint(tmp_path, tokenizer_factories, arch, tie, tok_name, dtype):
    tok = tokenizer_factories[tok_name]()
    src = make_checkpoint(tmp_path / "src", tok, arch, tie=tie, dtype=dtype)
    before = _reload(src)
    n_old, d = before.get_input_embeddings().weight.shape
    report = add_tokens_to_checkpoint(src, tmp_path / "out")

    # report
    saved = json.loads((tmp_path / "out" / "add_tokens_report.json").read_text(encoding="utf-8"))
    assert saved == report
    assert report["new_token_ids"] == report["control_ids"] == [n_old, n_old + 1, n_old + 2]
    n_new = report["embedding_rows_after"]
    assert n_new % 64 == 0 and n_new >= n_old + 3 and report["embedding_rows_before"] == n_old
    per_row = d * (1 if tie else 2)
    assert report["params_after"] - report["params_before"] == (n_new - n_old) * per_row
    assert report["tied_embeddings"] is tie and report["dtype"] == str(dtype)[6:]
    kl = report["kl_old_new"]
    assert kl["tokens"] > 50 and 0 <= kl["mean"] <= kl["max"]
    assert kl["mean"] <= kl["mean_init_bound"] * 1.01 + 1e-6  # Hewitt: log(1 + k/n) for mean init
    if tok_name == "gpt2":
        assert kl["mean"] <= 1e-3 and report["kl_within_target"]

    # reloadable by the Auto classes, dtype kept, shapes and tying right
    after = _reload(tmp_path / "out")
    tok2, man = load_tokenizer_with_manifest(tmp_path / "out")
    assert man.control_ids == report["control_ids"]
    assert after.get_input_embeddings().weight.dtype == dtype
    assert after.config.vocab_size == n_new
    w_in, w_in_old = after.get_input_embeddings().weight, before.get_input_embeddings().weight
    w_out, w_out_old = after.get_output_embeddings().weight, before.get_output_embeddings().weight
    assert w_in.shape == (n_new, d) and w_out.shape == (n_new, d)
    assert (w_in.data_ptr() == w_out.data_ptr()) is tie
    # old rows untouched, every new row (controls and padding) is the mean of the old rows
    torch.testing.assert_close(w_in[:n_old], w_in_old)
    torch.testing.assert_close(w_out[:n_old], w_out_old)
    for w, w_old in ((w_in, w_in_old), (w_out, w_out_old)):
        mean = w_old.float().mean(0).to(dtype)
        torch.testing.assert_close(w[n_old:], mean.expand(n_new - n_old, d))

    # ordinary text: old-vocab logits unchanged; control strings are single ids in the new tokenizer
    from transformers import AutoTokenizer

    # (compared with the source as AutoTokenizer loads it: in transformers 5 a qwen2 config makes AutoTokenizer
    # build Qwen2Tokenizer's own pipeline around the saved vocabulary)
    ids = encode_untrusted(tok2, SAMPLE_TEXT[:1])[0][:40]
    assert ids == encode_untrusted(AutoTokenizer.from_pretrained(str(src)), SAMPLE_TEXT[:1])[0][:40]
    torch.testing.assert_close(_logits(after, ids)[:, :n_old], _logits(before, ids), rtol=0, atol=1e-3)
    for s, i in zip(ControlTokens().strings(), man.control_ids):
        assert tok2.encode(s, add_special_tokens=False) == [i]


def test_text_init_and_custom_tokens(tmp_path, tokenizer_factories):
    tok = tokenizer_factories["sentencepiece"]()
    src = make_checkpoint(tmp_path / "src", tok, "llama", tie=False)
    spec = ControlTokens(tags=[*ControlTokens().tags, TagToken(role="neutral", string="<|neutral|>",
                                                               description=" neutral text")],
                         self_token="<|self|>", self_description=" AI")
    report = add_tokens_to_checkpoint(src, tmp_path / "out", spec=spec, init="text", pad_to_multiple_of=1)
    assert report["embedding_rows_after"] == len(tok) + 4
    before, after = _reload(src), _reload(tmp_path / "out")
    man = Manifest.load(tmp_path / "out")
    for role, desc in [("good", " good"), ("bad", " bad"), ("neutral", " neutral text")]:
        src_ids = tok.encode(desc, add_special_tokens=False)
        for get in ("get_input_embeddings", "get_output_embeddings"):
            want = getattr(before, get)().weight[src_ids].mean(0)
            torch.testing.assert_close(getattr(after, get)().weight[man.tag_id(role)], want)
    self_src = tok.encode(" AI", add_special_tokens=False)
    torch.testing.assert_close(after.get_input_embeddings().weight[man.self_token.id],
                               before.get_input_embeddings().weight[self_src].mean(0))


def test_idempotent_on_extended_checkpoint(tmp_path, tokenizer_factories):
    tok = tokenizer_factories["sentencepiece"]()
    src = make_checkpoint(tmp_path / "src", tok, "gpt2", tie=True)
    r1 = add_tokens_to_checkpoint(src, tmp_path / "one")
    r2 = add_tokens_to_checkpoint(tmp_path / "one", tmp_path / "two")
    assert r2["control_ids"] == r1["control_ids"] and r2["new_token_ids"] == []
    assert r2["embedding_rows_after"] == r2["embedding_rows_before"] == r1["embedding_rows_after"]
    assert r2["kl_old_new"]["max_abs_old_logit_change"] == 0.0
    one, two = _reload(tmp_path / "one"), _reload(tmp_path / "two")
    torch.testing.assert_close(one.get_input_embeddings().weight, two.get_input_embeddings().weight)


def test_spare_rows_are_reused_and_initialised(tmp_path, tokenizer_factories):
    """A checkpoint whose matrix already has spare rows (like Qwen2's padded vocab): ids land inside it, no
    resize, but those rows are still initialised to the mean."""
    tok = tokenizer_factories["sentencepiece"]()
    model = tiny_causal_lm("qwen2", len(tok) + 40, d_model=32, n_layer=1, n_head=2, tie_word_embeddings=False,
                           eos_token_id=tok.eos_token_id)
    model.save_pretrained(tmp_path / "src")
    tok.save_pretrained(tmp_path / "src")
    r = add_tokens_to_checkpoint(tmp_path / "src", tmp_path / "out")
    assert r["embedding_rows_after"] == r["embedding_rows_before"] == len(tok) + 40
    assert r["new_token_ids"] == [len(tok), len(tok) + 1, len(tok) + 2]
    after = _reload(tmp_path / "out")
    mean = model.get_output_embeddings().weight.mean(0)
    for i in r["new_token_ids"]:
        torch.testing.assert_close(after.get_output_embeddings().weight[i], mean)
    torch.testing.assert_close(after.get_output_embeddings().weight[len(tok) + 3],
                               model.get_output_embeddings().weight[len(tok) + 3])


# ------------------------------------------------------------------------------------------------ bad input
# (small_ckpt: conftest.py)

def test_generation_config_bans_control_ids_and_padding_rows(tmp_path, small_ckpt):
    """A plain `model.generate` on add-tokens' output never emits a tag (fed back as ids, it would set a
    condition nobody chose), the self token or a padding row, as condpt's own export (`condpt.export`) bans
    them: add-tokens copied the checkpoint's generation config, which banned nothing."""
    report = add_tokens_to_checkpoint(small_ckpt, tmp_path / "out")
    banned = sorted({*report["control_ids"], *range(report["tokenizer_len_after"], report["embedding_rows_after"])})
    assert len(banned) > 3
    assert json.loads((tmp_path / "out" / "generation_config.json").read_text())["suppress_tokens"] == banned
    assert _reload(tmp_path / "out").generation_config.suppress_tokens == banned


def _leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if p.name.startswith(".")]


def test_out_dir_exists_refused_then_overwrite(tmp_path, small_ckpt):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(CheckpointError, match="exists.*--overwrite"):
        add_tokens_to_checkpoint(small_ckpt, out)
    assert (out / "keep.txt").exists()
    add_tokens_to_checkpoint(small_ckpt, out, overwrite=True)
    assert not (out / "keep.txt").exists() and (out / "condpt_tokens.json").exists()
    assert _leftovers(tmp_path) == []


def test_failure_leaves_nothing_half_written(tmp_path, small_ckpt, monkeypatch):
    def boom(self, directory):
        raise OSError("disk full")

    monkeypatch.setattr(Manifest, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        add_tokens_to_checkpoint(small_ckpt, tmp_path / "out")
    assert not (tmp_path / "out").exists() and _leftovers(tmp_path) == []


def test_bad_inputs(tmp_path, small_ckpt):
    with pytest.raises(CheckpointError, match="not found"):
        add_tokens_to_checkpoint(tmp_path / "missing", tmp_path / "o")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no config.json"):
        add_tokens_to_checkpoint(tmp_path / "empty", tmp_path / "o")
    with pytest.raises(CheckpointError, match="must differ"):
        add_tokens_to_checkpoint(small_ckpt, small_ckpt, overwrite=True)
    with pytest.raises(CheckpointError, match="init"):
        add_tokens_to_checkpoint(small_ckpt, tmp_path / "o", init="zeros")
    with pytest.raises(CheckpointError, match="pad"):
        add_tokens_to_checkpoint(small_ckpt, tmp_path / "o", pad_to_multiple_of=0)
    assert not (tmp_path / "o").exists()


def test_not_a_causal_lm(tmp_path):
    from transformers import T5Config

    T5Config(d_model=16, num_layers=1, num_heads=2, d_ff=32, vocab_size=100).save_pretrained(tmp_path / "t5")
    with pytest.raises(CheckpointError, match="not a causal language model"):
        add_tokens_to_checkpoint(tmp_path / "t5", tmp_path / "o")


def test_missing_and_slow_tokenizer(tmp_path, small_ckpt):
    from transformers import AutoModelForCausalLM, CTRLTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(small_ckpt))
    model.save_pretrained(tmp_path / "notok")
    with pytest.raises(CheckpointError, match="no tokenizer files"):
        add_tokens_to_checkpoint(tmp_path / "notok", tmp_path / "o")

    vocab, merges = tmp_path / "vocab.json", tmp_path / "merges.txt"
    vocab.write_text(json.dumps({"a": 0, "b": 1, "UNK": 2, "a@@": 3}))
    merges.write_text("#version: 0.2\na b\n")
    model.save_pretrained(tmp_path / "slow")
    CTRLTokenizer(str(vocab), str(merges)).save_pretrained(tmp_path / "slow")
    with pytest.raises(CheckpointError, match="slow"):
        add_tokens_to_checkpoint(tmp_path / "slow", tmp_path / "o")
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------------------------ CLI
def _cli(args):
    import importlib

    from typer.testing import CliRunner

    from condpt.cli import _COMMAND_MODULES, app

    for name in _COMMAND_MODULES:  # as `condpt` does: with one command registered typer would drop the name
        importlib.import_module(f"condpt.cli.{name}")

    return CliRunner().invoke(app, args)


def test_cli_success_prints_report(tmp_path, small_ckpt):
    res = _cli(["add-tokens", str(small_ckpt), "--out", str(tmp_path / "out"), "--pad-to-multiple-of", "8"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout[: res.stdout.rindex("}") + 1])
    assert report["embedding_rows_after"] % 8 == 0
    assert report == json.loads((tmp_path / "out" / "add_tokens_report.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    "yaml_text, needle",
    [("tags:\n  - {role: good, string: ''}\n", "tags.0.string"),
     ("tags:\n  - {role: good, string: '<|x|>'}\n  - {role: bad, string: '<|x|>'}\n", "duplicate token strings")],
)
def test_cli_bad_token_file(tmp_path, small_ckpt, yaml_text, needle):
    spec = tmp_path / "tokens.yaml"
    spec.write_text(yaml_text)
    res = _cli(["add-tokens", str(small_ckpt), "--out", str(tmp_path / "out"), "--tokens", str(spec)])
    assert res.exit_code == 2 and needle in res.stderr and str(spec) in res.stderr
    assert "Traceback" not in res.output and not (tmp_path / "out").exists()


def test_cli_errors_exit_nonzero(tmp_path, small_ckpt):
    res = _cli(["add-tokens", str(tmp_path / "nope"), "--out", str(tmp_path / "out")])
    assert res.exit_code == 2 and "not found" in res.stderr
    (tmp_path / "out").mkdir()
    res = _cli(["add-tokens", str(small_ckpt), "--out", str(tmp_path / "out")])
    assert res.exit_code == 2 and "--overwrite" in res.stderr
    res = _cli(["add-tokens", str(small_ckpt), "--out", str(tmp_path / "o2"), "--init", "zeros"])
    assert res.exit_code == 2 and "--init" in res.stderr


# ------------------------------------------------------------------------------------------------ hostile checkpoints
def _broken_copy(tmp_path: Path, small_ckpt: Path, name: str) -> Path:
    import shutil

    return Path(shutil.copytree(small_ckpt, tmp_path / name))


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _garbage_utf8(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:8] + b"\xff" * 64 + data[72:])


def _garbage_length(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(b"\xff" * 8 + data[8:])


def _not_an_object(path: Path) -> None:
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    path.write_bytes(data[:8] + b"[1]".ljust(n) + data[8 + n:])


def _bad_offsets(path: Path) -> None:
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    name = next(k for k in header if k != "__metadata__")
    header[name]["data_offsets"] = [0, 10**12]
    blob = json.dumps(header).encode().ljust(n)
    path.write_bytes(data[:8] + blob[:n] + data[8 + n:] if len(blob) == n else len(blob).to_bytes(8, "little")
                     + blob + data[8 + n:])


BROKEN_WEIGHTS = {  # name -> (how to break model.safetensors, what the error says)
    "truncated": (_truncate, "truncated"),
    "truncated in the header": (lambda p: _truncate(p, 0.0001), "model.safetensors"),
    "garbage header bytes": (_garbage_utf8, "header"),
    "garbage header length": (_garbage_length, "header"),
    "header not an object": (_not_an_object, "header"),
    "offsets beyond the file": (_bad_offsets, "model.safetensors"),
}


@pytest.mark.parametrize("name", BROKEN_WEIGHTS, ids=list(BROKEN_WEIGHTS))
def test_broken_safetensors_is_an_error_naming_the_file(tmp_path, small_ckpt, name):
    breaker, needle = BROKEN_WEIGHTS[name]
    src = _broken_copy(tmp_path, small_ckpt, "src")
    breaker(src / "model.safetensors")
    with pytest.raises(CheckpointError, match=needle) as e:
        add_tokens_to_checkpoint(src, tmp_path / "out")
    assert str(src / "model.safetensors") in str(e.value)
    assert not (tmp_path / "out").exists() and _leftovers(tmp_path) == []


def test_no_weights_file(tmp_path, small_ckpt):
    src = _broken_copy(tmp_path, small_ckpt, "src")
    (src / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no weights file") as e:
        add_tokens_to_checkpoint(src, tmp_path / "out")
    assert str(src) in str(e.value) and _leftovers(tmp_path) == []


def test_sharded_index_naming_a_missing_or_bad_shard(tmp_path, small_ckpt):
    src = _broken_copy(tmp_path, small_ckpt, "src")
    (src / "model.safetensors").rename(src / "model-00001-of-00002.safetensors")
    header_keys = [k for k in json.loads((src / "model-00001-of-00002.safetensors").read_bytes()[8:][
        :int.from_bytes((src / "model-00001-of-00002.safetensors").read_bytes()[:8], "little")]) if k != "__metadata__"]
    index = {"metadata": {}, "weight_map": {k: "model-00001-of-00002.safetensors" for k in header_keys}}
    index["weight_map"]["extra.weight"] = "model-00002-of-00002.safetensors"
    (src / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="model-00002-of-00002.safetensors"):
        add_tokens_to_checkpoint(src, tmp_path / "out")
    (src / "model.safetensors.index.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="model.safetensors.index.json"):
        add_tokens_to_checkpoint(src, tmp_path / "out")
    assert _leftovers(tmp_path) == []


def test_truncated_pytorch_bin(tmp_path, small_ckpt):
    import shutil

    from safetensors.torch import load_file

    (tmp_path / "bin").mkdir()
    for f in small_ckpt.iterdir():
        if f.name != "model.safetensors":
            shutil.copy(f, tmp_path / "bin" / f.name)
    torch.save(load_file(small_ckpt / "model.safetensors"), tmp_path / "bin" / "pytorch_model.bin")
    _truncate(tmp_path / "bin" / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="cannot be loaded") as e:
        add_tokens_to_checkpoint(tmp_path / "bin", tmp_path / "out")
    assert str(tmp_path / "bin") in str(e.value) and _leftovers(tmp_path) == []


def test_tokenizer_larger_than_the_embedding_matrix(tmp_path, sp_training_texts):
    from condpt.tiny import train_sentencepiece_tokenizer

    tok = train_sentencepiece_tokenizer(sp_training_texts, vocab_size=300)
    model = tiny_causal_lm("gpt2", len(tok) - 40, d_model=32, n_layer=1, n_head=2, eos_token_id=tok.eos_token_id)
    model.save_pretrained(tmp_path / "src")
    tok.save_pretrained(tmp_path / "src")
    with pytest.raises(CheckpointError, match=f"{len(tok)} tokens.*{len(tok) - 40} rows") as e:
        add_tokens_to_checkpoint(tmp_path / "src", tmp_path / "out")
    assert str(tmp_path / "src") in str(e.value) and _leftovers(tmp_path) == []


@pytest.mark.parametrize("delta", [10, -10])
def test_config_vocab_size_disagreeing_with_the_weights(tmp_path, small_ckpt, delta):
    """config.json's vocab_size not the embedding tensor's rows: an error naming the config, the tensor and both
    sizes (was transformers' "You set `ignore_mismatched_sizes` to `False`" after loading the model)."""
    src = _broken_copy(tmp_path, small_ckpt, "src")
    config = json.loads((src / "config.json").read_text(encoding="utf-8"))
    rows = config["vocab_size"]
    config["vocab_size"] = rows + delta
    (src / "config.json").write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(CheckpointError, match=f"vocab_size {rows + delta}.*wte.weight.* {rows} rows") as e:
        add_tokens_to_checkpoint(src, tmp_path / "out")
    assert str(src / "config.json") in str(e.value) and not (tmp_path / "out").exists()


@pytest.mark.parametrize("case", ["no weights", "truncated", "garbage header"])
def test_cli_broken_checkpoint_exits_2_without_traceback(tmp_path, small_ckpt, case):
    src = _broken_copy(tmp_path, small_ckpt, "src")
    weights = src / "model.safetensors"
    {"no weights": Path.unlink, "truncated": _truncate, "garbage header": _garbage_length}[case](weights)
    res = _cli(["add-tokens", str(src), "--out", str(tmp_path / "out")])
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and res.exception is None or isinstance(res.exception, SystemExit)
    assert str(src) in res.stderr and not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------------ after a kill
def _dead_pid() -> int:
    import subprocess

    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_stale_temporary_directories_of_dead_runs_are_removed(tmp_path, small_ckpt):
    import os
    import socket

    host = socket.gethostname()
    dead = tmp_path / f".out.tmp-{host}-{_dead_pid()}-abcd1234"
    dead_old = tmp_path / f".out.old-{host}-{_dead_pid()}-abcd1234"
    alive = tmp_path / f".out.tmp-{host}-{os.getppid()}-abcd1234"  # a running process: maybe still writing
    other_out = tmp_path / f".other.tmp-{host}-{_dead_pid()}-abcd1234"  # not this OUT's
    foreign = tmp_path / ".out.tmp-xyz"  # not named by us
    for d in (dead, dead_old, alive, other_out, foreign):
        (d / "x").mkdir(parents=True)
    add_tokens_to_checkpoint(small_ckpt, tmp_path / "out")
    assert sorted(_leftovers(tmp_path)) == sorted(d.name for d in (alive, other_out, foreign))


def test_rerun_after_sigkill_cleans_up(tmp_path, small_ckpt):
    """A run SIGKILLed while writing OUT's temporary directory leaves it behind; the next run removes it."""
    import subprocess
    import sys

    script = (
        "import os, signal, sys\n"
        "from tokenizer_ext.spec import Manifest\n"
        "from tokenizer_ext.resize import add_tokens_to_checkpoint\n"
        "Manifest.save = lambda self, d: os.kill(os.getpid(), signal.SIGKILL)\n"
        "add_tokens_to_checkpoint(sys.argv[1], sys.argv[2])\n"
    )
    res = subprocess.run([sys.executable, "-c", script, str(small_ckpt), str(tmp_path / "out")],
                         check=False, timeout=300)
    assert res.returncode == -9
    left = _leftovers(tmp_path)
    assert left and all(name.startswith(".out.tmp-") for name in left)
    add_tokens_to_checkpoint(small_ckpt, tmp_path / "out")
    assert _leftovers(tmp_path) == [] and (tmp_path / "out" / "condpt_tokens.json").is_file()


def test_weights_file_without_the_embedding(tmp_path, small_ckpt):
    """A complete-looking file that lacks a tensor: transformers would initialise it at random with a warning."""
    from safetensors.torch import load_file, save_file

    src = _broken_copy(tmp_path, small_ckpt, "src")
    state = load_file(src / "model.safetensors")
    name = next(k for k in state if "wte" in k)
    del state[name]
    save_file(state, src / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="lack") as e:
        add_tokens_to_checkpoint(src, tmp_path / "out")
    assert name in str(e.value) and str(src) in str(e.value) and _leftovers(tmp_path) == []


def test_cli_write_error_exits_2(tmp_path, small_ckpt, monkeypatch):
    def boom(self, directory):
        raise OSError(28, "No space left on device", str(directory))

    monkeypatch.setattr(Manifest, "save", boom)
    res = _cli(["add-tokens", str(small_ckpt), "--out", str(tmp_path / "out")])
    assert res.exit_code == 2 and "No space left on device" in res.stderr and "Traceback" not in res.output
    assert not (tmp_path / "out").exists() and _leftovers(tmp_path) == []
