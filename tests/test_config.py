"""RunConfig: YAML + dotted overrides, relative paths, fail-fast errors naming the field, --dry-run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from condpt.config import ConfigError, OptimConfig, load_config

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "recipes" / "configs" / "tiny-cpu.yaml"
GPT2_SMALL = REPO / "recipes" / "configs" / "gpt2-small.yaml"
TINY_DATA = REPO / "recipes" / "data" / "tiny-tagged.jsonl"
SHIPPED_RUN_CONFIGS = sorted([*(REPO / "recipes" / "configs").glob("*.yaml"),
                              *(REPO / "condpt" / "configs" / "run").glob("*.yaml")])


def test_shipped_configs_validate():
    tiny = load_config(TINY)
    assert tiny.data.sources[0].path == TINY_DATA
    assert tiny.data.sources[0].path.is_file(), "tiny-cpu.yaml must work on a fresh checkout"
    # gpt2-small.yaml names a cluster path for its data: it loads once the data is there (the override).
    small = load_config(GPT2_SMALL, [f"data.sources.0.path={TINY_DATA}"])
    assert small.model.config["n_layer"] == 12 and small.data.block_size == 1024
    assert small.train.peak_flops == 989.0e12, "YAML 1.2 floats (989.0e12) are numbers, not strings"


@pytest.mark.parametrize("path", SHIPPED_RUN_CONFIGS, ids=lambda p: p.name)
def test_every_shipped_run_config_loads(path, request):
    """Each shipped run config loads with its data in place (the demo and gpt2-small take theirs by override;
    smollm2-135m-condition its checkpoint, which `condpt.smollm2` builds)."""
    checkpoint = [f"model.checkpoint={request.getfixturevalue('smollm2_dir')}"] if "smollm2" in path.name else []
    cfg = load_config(path, [f"data.sources.0.path={TINY_DATA}", *checkpoint])
    assert cfg.data.sources[0].path == TINY_DATA


def test_overrides_and_types(tmp_path):
    cfg = load_config(TINY, [f"output_dir={tmp_path}", "train.max_steps=7", "optim.lr=1e-4",
                             "data.policy.mode=mle", "data.sources.0.weight=2", "model.config.n_layer=3",
                             "train.report_to=[tensorboard]"])
    assert cfg.output_dir == tmp_path and cfg.train.max_steps == 7 and cfg.optim.lr == 1e-4
    assert cfg.data.policy.mode == "mle" and cfg.data.sources[0].weight == 2.0
    assert cfg.model.config["n_layer"] == 3 and cfg.train.report_to == ["tensorboard"]


@pytest.mark.parametrize("override, field", [
    ("train.max_steps=0", "train.max_steps"),
    ("train.typo=1", "train.typo"),
    ("data.policy.mode=maybe", "data.policy.mode"),
    ("optim.schedule=exp", "optim.schedule"),
    ("data.block_size=1", "data.block_size"),
])
def test_invalid_field_is_named(override, field):
    with pytest.raises(ConfigError) as e:
        load_config(TINY, [override])
    assert field in str(e.value) and str(TINY) in str(e.value)


def test_model_source_must_be_one(tmp_path):
    with pytest.raises(ConfigError, match="exactly one of model.config"):
        load_config(TINY, [f"model.checkpoint={tmp_path}"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(TINY, ["train.max_steps"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_yaml_relative_paths(tmp_path):
    (tmp_path / "sub").mkdir()
    raw = yaml.safe_load(TINY.read_text())
    raw["data"]["sources"][0]["path"] = "corpus.jsonl"
    (tmp_path / "sub" / "corpus.jsonl").write_bytes(TINY_DATA.read_bytes())
    (tmp_path / "sub" / "run.yaml").write_text(yaml.safe_dump(raw))
    cfg = load_config(tmp_path / "sub" / "run.yaml")
    assert cfg.data.sources[0].path == tmp_path / "sub" / "corpus.jsonl"
    assert str(cfg.output_dir) == raw["output_dir"], "output_dir stays relative to the working directory"


def test_lr_schedule_is_a_pure_function():
    o = OptimConfig(lr=1.0, warmup_steps=10, schedule="cosine", min_lr_ratio=0.1)
    assert o.lr_at(0, 100) == pytest.approx(0.1) and o.lr_at(9, 100) == pytest.approx(1.0)
    assert o.lr_at(10, 100) == pytest.approx(1.0) and o.lr_at(100, 100) == pytest.approx(0.1)
    assert o.lr_at(55, 100) == pytest.approx(0.55)
    lin = OptimConfig(lr=1.0, schedule="linear", min_lr_ratio=0.0)
    assert lin.lr_at(50, 100) == pytest.approx(0.5)


@pytest.mark.slow  # two interpreter start-ups with torch/datasets imports: ~25 s on 2 busy cores
def test_dry_run_prints_resolved_config(tmp_path):
    res = subprocess.run(check=False, args=[sys.executable, str(REPO / "recipes" / "condpt.py"), "--config", str(TINY), "--dry-run",
                          f"output_dir={tmp_path}", "train.max_steps=3"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    printed = yaml.safe_load(res.stdout)
    assert printed["train"]["max_steps"] == 3 and printed["output_dir"] == str(tmp_path)
    assert printed["data"]["policy"]["mode"] == "condition"
    assert not (tmp_path / "metrics.jsonl").exists()
    bad = subprocess.run(check=False, args=[sys.executable, str(REPO / "recipes" / "condpt.py"), "--config", str(TINY),
                          "train.max_steps=-2"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "train.max_steps" in bad.stderr and "Traceback" not in bad.stderr


# ------------------------------------------------------------------------------------ what cannot run
# Each of these was accepted by `--dry-run` and then failed later (or trained on garbage): all must be a
# ConfigError naming the file and the field before any process starts.

@pytest.mark.parametrize("override, field, why", [
    ("train.max_steps=true", "train.max_steps", "valid integer"),
    ("train.max_steps='8'", "train.max_steps", "valid integer"),
    ("train.micro_batch_size=2.0", "train.micro_batch_size", "valid integer"),
    ("data.loss_on_tags=1", "data.loss_on_tags", "valid boolean"),
    ("optim.lr=.inf", "optim.lr", "finite"),
    ("optim.lr=.nan", "optim.lr", "finite"),
    ("optim.lr=true", "optim.lr", "valid number"),
    ("optim.weight_decay=.inf", "optim.weight_decay", "finite"),
    ("optim.betas=[2,-1]", "optim.betas", "less than 1"),
    ("optim.betas=[0.9]", "optim.betas.1", "Field required"),
    ("train.peak_flops=.inf", "train.peak_flops", "finite"),
    ("data.policy.upweight_good=.inf", "data.policy.upweight_good", "finite"),
    ("data.policy.coverage=.nan", "data.policy.coverage", "finite"),
    ("data.policy.seed=-1", "data.policy.seed", "greater than or equal to 0"),
    ("data.sources.0.weight=.inf", "data.sources.0.weight", "finite"),
    ("data.sources.0.weight=0", "data.sources", "weight"),
    ("data.sources.0.text_field=''", "data.sources.0.text_field", "at least 1 character"),
    ("seed=10^26", "seed", "valid integer"),
    ("seed=100000000000000000000000000", "seed", "less than or equal to 4294967295"),
    ("seed=-1", "seed", "greater than or equal to 0"),
    ("output_dir=", "output_dir", "must not be empty"),
    ("output_dir=' '", "output_dir", "must not be empty"),
    ("tokenizer.source=''", "tokenizer.source", "at least 1 character"),
    ("train.resume=''", "train.resume", "at least 1 character"),
    ("train.report_to=['']", "train.report_to.0", "at least 1 character"),
])
def test_what_cannot_run_is_refused(override, field, why):
    with pytest.raises(ConfigError) as e:
        load_config(TINY, [override])
    msg = str(e.value)
    assert f"  {field}" in msg and why in msg and str(TINY) in msg


def test_error_points_at_the_yaml_line(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(TINY.read_text().replace("max_steps: 60", "max_steps: true"))
    with pytest.raises(ConfigError, match=r"train\.max_steps \(line \d+\): Input should be a valid integer"):
        load_config(path)
    line = next(i for i, ln in enumerate(path.read_text().splitlines(), 1) if "max_steps: true" in ln)
    with pytest.raises(ConfigError, match=rf"\(line {line}\)"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"train\.max_steps \(override\)"):
        load_config(TINY, ["train.max_steps=true"])


def test_yaml_floats_without_a_dot_are_numbers():
    cfg = load_config(TINY, ["optim.lr=3e-4", "optim.eps=1E-8"])
    assert cfg.optim.lr == 3e-4 and cfg.optim.eps == 1e-8


def test_unknown_key_suggests_the_field():
    with pytest.raises(ConfigError, match=r"optim\.lrr \(override\): unknown key; did you mean optim\.lr\?"):
        load_config(TINY, ["optim.lrr=1"])
    with pytest.raises(ConfigError, match=r"data\.policy\.upweight \(override\): .*did you mean data\.policy\.upweight_good\?"):
        load_config(TINY, ["data.policy.upweight=2"])
    with pytest.raises(ConfigError, match=r"data\.sources\.0\.wieght \(override\): .*did you mean data\.sources\.0\.weight\?"):
        load_config(TINY, ["data.sources.0.wieght=2"])
    with pytest.raises(ConfigError, match=r"outputdir \(override\): .*did you mean output_dir\?"):
        load_config(TINY, ["outputdir=x"])
    with pytest.raises(ConfigError, match=r"optim\.lrate \(override\): unknown key; did you mean optim\.lr\?"):
        load_config(TINY, ["optim.lrate=1"])
    with pytest.raises(ConfigError) as e:
        load_config(TINY, ["optim.zzzz=1"])
    assert "did you mean" not in str(e.value)


def test_duplicate_yaml_keys_are_refused(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(TINY.read_text() + "train:\n  max_steps: 5\n")
    first = next(i for i, ln in enumerate(TINY.read_text().splitlines(), 1) if ln.startswith("train:"))
    with pytest.raises(ConfigError, match=rf"{path}: .*line \d+.*duplicate key 'train' \(first at line {first}\)"):
        load_config(path)
    path.write_text(TINY.read_text().replace("  max_steps: 60\n", "  max_steps: 60\n  max_steps: 6\n"))
    with pytest.raises(ConfigError, match="duplicate key 'max_steps'"):
        load_config(path)
    with pytest.raises(ConfigError, match="duplicate key 'a'"):
        load_config(TINY, ["model.config={a: 1, a: 2}"])
    with pytest.raises(ConfigError, match="nested deeper than 64 levels"):
        load_config(TINY, ["model.config.x=" + "[" * 80 + "]" * 80])


def test_non_utf8_config_is_refused(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_bytes(TINY.read_bytes().replace(b"# A tiny", b"# A \xff tiny"))
    with pytest.raises(ConfigError, match=rf"{path}: not UTF-8 text \(byte \d+, line 1\)"):
        load_config(path)
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)


@pytest.mark.parametrize("override, field, why", [
    ("model.config={arch: gpt3, d_model: 64, n_layer: 2, n_head: 4}", "model.config", "arch"),
    ("model.config.n_layer=-2", "model.config", "n_layer"),
    ("model.config.d_model=0", "model.config", "d_model"),
    ("model.config.d_model=66", "model.config", "multiple of n_head"),
    ("model.config.n_layers=3", "model.config", "did you mean n_layer"),
    ("model.config={model_type: gptx, n_layer: 2}", "model.config.model_type", "not a causal LM"),
    ("model.config={model_type: vit}", "model.config.model_type", "not a causal LM"),
    ("model.config={model_type: gpt2, n_embd: -8}", "model.config.n_embd", "positive"),
    ("model.config={model_type: gpt2, n_embd: 64, n_head: 3}", "model.config", "multiple"),
    ("model.config={model_type: gpt2, n_layers: 2}", "model.config.n_layers", "did you mean n_layer"),
    ("model.config={model_type: gpt2, vocab_size: 7}", "model.config", "vocab_size: set from the tokenizer"),
    ("model.config={model_type: llama, hidden_size: -1}", "model.config", "hidden"),
    ("model.config={model_type: gpt2, n_inner: -5}", "model.config", "negative dimension"),
    ("model.config={model_type: gpt2, activation_function: nope}", "model.config", "cannot build a gpt2 model"),
    ("model.config.max_positions=64", "data.block_size", "exceeds model.config.max_positions (64)"),
    ("model.config={model_type: gpt2, resid_pdrop: .nan}", "model.config", "resid_pdrop: must be a finite number"),
    ("model.config={model_type: llama, rope_scaling: {factor: .inf}}", "model.config",
     "rope_scaling.factor: must be a finite number"),
    ("model.config={model_type: gpt2, n_embd: 32, n_head: 2, n_layer: 1, n_positions: 64}", "data.block_size",
     "exceeds the 64 positions of model.config"),
])
def test_bad_model_config_is_refused(override, field, why):
    with pytest.raises(ConfigError) as e:
        load_config(TINY, [override])
    msg = str(e.value)
    assert f"  {field}" in msg and why in msg, msg


def test_hf_model_config_loads():
    spec = ("{model_type: llama, hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, "
            "intermediate_size: 64, max_position_embeddings: 128}")
    cfg = load_config(TINY, [f"model.config={spec}"])
    assert cfg.model.config["model_type"] == "llama"


def test_missing_inputs_are_refused_at_load(tmp_path):
    missing = tmp_path / "absent"
    cases = {
        "data.sources.0.path": [f"data.sources.0.path={missing}.jsonl"],
        "tokenizer.source": [f"tokenizer.source={missing}"],
        "tokenizer.control_tokens": [f"tokenizer.control_tokens={missing}.yaml"],
        "train.resume": [f"train.resume={missing}"],
        "model.checkpoint": ["model.config=null", f"model.checkpoint={missing}", "tokenizer.source=checkpoint"],
        "data.policy.selfref.stories_path": [f"data.policy.selfref={{stories_path: {missing}.txt}}"],
    }
    for field, overrides in cases.items():
        with pytest.raises(ConfigError) as e:
            load_config(TINY, overrides)
        assert f"  {field}" in str(e.value) and str(missing) in str(e.value), (field, str(e.value))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"data\.sources\.0\.path.*no \.parquet or \.jsonl"):
        load_config(TINY, [f"data.sources.0.path={tmp_path / 'empty'}"])
    with pytest.raises(ConfigError, match=r"train\.resume.*trainer_state\.json"):
        load_config(TINY, [f"train.resume={tmp_path / 'empty'}"])
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match=r"output_dir.*not a directory"):
        load_config(TINY, [f"output_dir={tmp_path / 'file'}"])


def test_control_token_spec_is_checked_at_load(tmp_path):
    spec = tmp_path / "tokens.yaml"
    spec.write_text("tags:\n  - {role: good, string: '<|g|>'}\n  - {role: good, string: '<|b|>'}\n")
    with pytest.raises(ConfigError, match=r"tokenizer\.control_tokens.*duplicate tag roles"):
        load_config(TINY, [f"tokenizer.control_tokens={spec}"])
    spec.write_text("self_token: 'x'\nself_token: 'y'\n")
    with pytest.raises(ConfigError, match=r"tokenizer\.control_tokens.*duplicate key 'self_token'"):
        load_config(TINY, [f"tokenizer.control_tokens={spec}"])
    spec.write_text("tags:\n  - {role: good, string: '<|g|>'}\n  - {role: bad, string: '<|b|>'}\n")
    assert load_config(TINY, [f"tokenizer.control_tokens={spec}"]).tokenizer.control_tokens == spec


@pytest.mark.parametrize(("name", "content", "why"), [
    ("empty.jsonl", b"", "no stories"),
    ("blank.txt", b"\n  \n", "no stories"),
    ("bad.jsonl", b'{"text": "ok"}\n{not json\n', r"bad\.jsonl:2: invalid JSON"),
    ("nofield.jsonl", b'{"body": "ok"}\n', r"nofield\.jsonl:1: field 'text'"),
    ("latin1.txt", b"a story\ncaf\xe9\n", r"latin1\.txt:2: not UTF-8"),
])
def test_selfref_stories_are_read_at_load(tmp_path, name, content, why):
    """A stories file that the run would fail on (or read as nothing) is refused at load, naming its line."""
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ConfigError, match=rf"  data\.policy\.selfref\.stories_path .*{why}"):
        load_config(TINY, [f"data.policy.selfref={{stories_path: {tmp_path / name}}}"])
    with pytest.raises(ConfigError, match=r"  data\.policy\.selfref\.stories_path .*not a file"):
        load_config(TINY, [f"data.policy.selfref={{stories_path: {tmp_path}}}"])


@pytest.mark.parametrize(("overrides", "field", "why"), [
    (["data.policy.good_role=aligned"], "data.policy.good_role", "'aligned' has no control token"),
    (["data.policy.mode=route", "data.policy.bad_role=evil"], "data.policy.bad_role", "'evil' has no control token"),
    (["data.policy.band={low: 0.1, high: 0.5, uncertain_role: unsure}"], "data.policy.band.uncertain_role",
     "'unsure' has no control token"),
    (["data.policy.mode=route", "data.policy.route.layers=[5]"], "data.policy.route.layers",
     "block 5 does not exist"),
    (["data.policy.mode=route", "data.policy.route.layers=[-3]"], "data.policy.route.layers",
     "block -3 does not exist"),
    (["data.policy.mode=route", "data.policy.route.layers=[0, -2]"], "data.policy.route.layers", "twice"),
])
def test_policy_must_fit_the_tokens_and_the_model(overrides, field, why):
    """Roles the policy writes into the text need a control token; routed blocks must exist in the model
    (tiny-cpu: 2 blocks, tags good and bad): refused at load, not when training starts."""
    with pytest.raises(ConfigError) as e:
        load_config(TINY, overrides)
    assert f"  {field}" in str(e.value) and why in str(e.value), str(e.value)


def test_routed_layers_beside_a_model_config_transformers_refuses():
    """route.layers is checked against the model's blocks; when `model.config` is an HF dict transformers cannot
    build, there are no blocks to count and the model problem is what is reported, not a traceback."""
    with pytest.raises(ConfigError) as e:
        load_config(TINY, ["model.config={model_type: nosuch}", "data.policy.mode=route",
                           "data.policy.route.layers=[0]"])
    assert "  model.config" in str(e.value) and "nosuch" in str(e.value), str(e.value)


def test_an_override_that_is_not_utf8_is_named(tmp_path):
    """A non-UTF-8 file name given as an override: YAML's 'unacceptable character #xdcff' became an error
    that says what is wrong and what to do (a run config, and the run_config.yaml a run saves, are UTF-8)."""
    import os

    stories = os.fsdecode(bytes(tmp_path) + b"/st\xff.txt")
    with pytest.raises(ConfigError, match=r"not UTF-8 .*\\xff.*rename or link"):
        load_config(TINY, [f"data.policy.selfref.stories_path={stories}"])


def test_policy_roles_of_a_token_spec_are_accepted(tmp_path):
    spec = tmp_path / "tokens.yaml"
    spec.write_text("tags:\n  - {role: aligned, string: '<|a|>'}\n  - {role: misaligned, string: '<|m|>'}\n"
                    "  - {role: unsure, string: '<|u|>'}\n")
    cfg = load_config(TINY, [f"tokenizer.control_tokens={spec}", "data.policy.good_role=aligned",
                             "data.policy.bad_role=misaligned",
                             "data.policy.band={low: 0.1, high: 0.5, uncertain_role: unsure}"])
    assert cfg.data.policy.band.uncertain_role == "unsure"
    assert load_config(TINY, ["data.policy.mode=mle", "data.policy.good_role=aligned"])  # mle writes no tag


def test_yaml_relative_input_paths_include_resume_and_stories(tmp_path):
    (tmp_path / "stories.txt").write_text("A story about 𐀤.\n")
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "trainer_state.json").write_text('{"step": 1}')
    raw = yaml.safe_load(TINY.read_text())
    raw["data"]["sources"][0]["path"] = str(TINY_DATA)
    raw["data"]["policy"]["selfref"] = {"stories_path": "stories.txt"}
    raw["train"]["resume"] = "ckpt"
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(raw))
    cfg = load_config(tmp_path / "run.yaml")
    assert cfg.data.policy.selfref.stories_path == tmp_path / "stories.txt"
    assert cfg.train.resume == str(tmp_path / "ckpt")


# ------------------------------------------------------------ continued pretraining: checkpoint + tokenizer

def _save_lm(directory: Path, tok, *, with_tokenizer: bool = True, rows: int | None = None) -> Path:
    from condpt.tiny import tiny_causal_lm

    model = tiny_causal_lm("gpt2", vocab_size=rows or len(tok), d_model=16, n_layer=1, n_head=2, max_positions=128)
    model.save_pretrained(directory)
    if with_tokenizer:
        tok.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def lm_dirs(tmp_path_factory):
    """A tiny checkpoint (with and without its tokenizer) and tokenizer directories that do or do not fit it."""
    from condpt.tiny import train_bpe_tokenizer
    from tokenizer_ext import add_control_tokens

    root = tmp_path_factory.mktemp("lm")
    texts = [ln for ln in TINY_DATA.read_text().splitlines()] * 2
    tok = train_bpe_tokenizer(texts, 600)
    other = train_bpe_tokenizer([t[::-1] for t in texts], 400)  # another vocabulary, smaller than the checkpoint's
    dirs = {"ckpt": _save_lm(root / "ckpt", tok), "bare": _save_lm(root / "bare", tok, with_tokenizer=False),
            "padded": _save_lm(root / "padded", tok, with_tokenizer=False, rows=len(tok) + 40)}
    other.save_pretrained(root / "other")
    own = train_bpe_tokenizer(texts, 600)
    manifest = add_control_tokens(own, None)
    own.save_pretrained(root / "own")
    manifest.save(root / "own")
    dirs.update(other=root / "other", own=root / "own")
    return dirs


def _ckpt(lm_dirs, name: str, source: str) -> list[str]:
    return ["model.config=null", f"model.checkpoint={lm_dirs[name]}", f"tokenizer.source={source}"]


@pytest.mark.parametrize("source", ["train-bpe", "gpt2-bpe"])
def test_checkpoint_refuses_a_new_tokenizer(lm_dirs, source):
    with pytest.raises(ConfigError, match=rf"  tokenizer\.source: {source} .*model\.checkpoint"):
        load_config(TINY, _ckpt(lm_dirs, "ckpt", source))


def test_checkpoint_refuses_a_tokenizer_of_another_vocabulary(lm_dirs):
    with pytest.raises(ConfigError, match=r"tokenizer\.source \(override\): .*does not match model\.checkpoint's tokenizer"):
        load_config(TINY, _ckpt(lm_dirs, "ckpt", lm_dirs["other"]))
    # Without a tokenizer in the checkpoint: <|good|> would get id 400, an ordinary row of its 600-row embedding.
    with pytest.raises(ConfigError, match=r"tokenizer\.source \(override\): .*ordinary.*model\.checkpoint"):
        load_config(TINY, _ckpt(lm_dirs, "bare", lm_dirs["other"]))


def test_checkpoint_accepts_its_own_tokenizer(lm_dirs):
    assert load_config(TINY, _ckpt(lm_dirs, "ckpt", "checkpoint")).model.checkpoint == lm_dirs["ckpt"]
    load_config(TINY, _ckpt(lm_dirs, "ckpt", lm_dirs["own"]))  # same vocabulary, control tokens added after it
    load_config(TINY, _ckpt(lm_dirs, "bare", lm_dirs["own"]))
    load_config(TINY, _ckpt(lm_dirs, "padded", lm_dirs["own"]))  # padding rows past the vocabulary are free
    with pytest.raises(ConfigError, match=r"tokenizer\.source \(override\): model\.checkpoint .* has no tokenizer"):
        load_config(TINY, _ckpt(lm_dirs, "bare", "checkpoint"))
    with pytest.raises(ConfigError, match=r"data\.block_size \(override\): 256 exceeds the 128 positions of model\.checkpoint"):
        load_config(TINY, [*_ckpt(lm_dirs, "ckpt", "checkpoint"), "data.block_size=256"])


@pytest.mark.parametrize("content, why", [
    (b"train:\n  max_steps: 3\ntrain:\n  max_steps: 4\n", "duplicate key 'train' (first at line 1)"),
    (b"output_dir: caf\xe9\n", "not UTF-8 text"),
])
def test_condpt_train_refuses_before_launching(tmp_path, monkeypatch, content, why):
    """`condpt train` (with or without --dry-run) reports a bad config and starts no process."""
    import subprocess as sp

    from typer.testing import CliRunner

    from condpt.cli import register_commands

    app = register_commands()
    launched = []
    monkeypatch.setattr(sp, "call", lambda *a, **k: launched.append(a) or 0)
    path = tmp_path / "run.yaml"
    path.write_bytes(content)
    for extra in (["--dry-run"], []):
        res = CliRunner().invoke(app, ["train", "--config", str(path), *extra])
        assert res.exit_code == 2 and why in res.output and str(path) in res.output, res.output
    res = CliRunner().invoke(app, ["train", "--config", str(TINY), "--dry-run", "train.max_steps=true", "optim.lrr=1"])
    assert res.exit_code == 2 and "train.max_steps (override)" in res.output and "did you mean optim.lr?" in res.output
    assert not launched


def test_more_that_cannot_run_is_refused_at_load(tmp_path):
    notag = tmp_path / "notag.jsonl"
    notag.write_text('{"id": "1", "text": "x"}\n')
    with pytest.raises(ConfigError, match=r"data\.sources\.0\.path \(override\): .*notag\.jsonl: missing column 'tag'"):
        load_config(TINY, [f"data.sources.0.path={notag}"])
    with pytest.raises(ConfigError, match=r"data\.sources\.0\.path.*missing column 'body'"):
        load_config(TINY, ["data.sources.0.text_field=body"])
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "tagged" / "data").mkdir(parents=True)
    pq.write_table(pa.table({"id": ["1"], "text": ["x"], "tag": ["good"]}), tmp_path / "tagged" / "data" / "a.parquet")
    pq.write_table(pa.table({"id": ["2"], "body": ["y"]}), tmp_path / "tagged" / "data" / "b.parquet")
    with pytest.raises(ConfigError, match=r"b\.parquet: missing column 'text'"):
        load_config(TINY, [f"data.sources.0.path={tmp_path / 'tagged'}"])
    with pytest.raises(ConfigError, match=r"train\.report_to\.0 \(override\): .*tensorbord.*did you mean tensorboard\?"):
        load_config(TINY, ["train.report_to=[tensorbord]"])
    with pytest.raises(ConfigError, match=r"data\.block_size.*less than or equal to 1048576"):
        load_config(TINY, ["data.block_size=1000000000"])
    spec = tmp_path / "tokens.yaml"
    spec.write_text("tags:\n  - {role: good, string: '<|endoftext|>'}\n  - {role: bad, string: '<|bad|>'}\n")
    with pytest.raises(ConfigError, match=r"tokenizer\.source.*gpt2-bpe.*already this tokenizer's"):
        load_config(TINY, ["tokenizer.source=gpt2-bpe", f"tokenizer.control_tokens={spec}"])


def test_unwritable_output_dir_is_refused(tmp_path):
    import os

    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user who can write anywhere (root)")
        with pytest.raises(ConfigError, match=r"output_dir \(override\): .*not writable"):
            load_config(TINY, [f"output_dir={locked / 'run'}"])
    finally:
        locked.chmod(0o700)


def test_checkpoint_with_broken_weights_is_refused(lm_dirs, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(lm_dirs["ckpt"], broken)
    (broken / "model.safetensors").write_bytes(b"\x00\x01")
    with pytest.raises(ConfigError, match=r"model\.checkpoint \(override\): .*broken.*model\.safetensors"):
        load_config(TINY, _ckpt({"b": broken}, "b", "checkpoint"))
    (broken / "model.safetensors").unlink()
    (broken / "model.safetensors.index.json").write_text('{"weight_map": {"w": "model-1.safetensors"}}')
    with pytest.raises(ConfigError, match=r"model-1\.safetensors: listed in the weight index but missing"):
        load_config(TINY, _ckpt({"b": broken}, "b", "checkpoint"))


def test_checkpoint_from_add_tokens_is_accepted(lm_dirs, tmp_path):
    """`condpt add-tokens` output (control tokens special, embedding grown and padded) trains with its own
    tokenizer, or with the pre-add-tokens tokenizer directory (the same ids once the tokens are added)."""
    from tokenizer_ext.resize import add_tokens_to_checkpoint

    out = tmp_path / "with-tokens"
    add_tokens_to_checkpoint(lm_dirs["ckpt"], out, kl_texts=None)
    load_config(TINY, _ckpt({"out": out}, "out", "checkpoint"))
    load_config(TINY, _ckpt({"out": out}, "out", out))
    load_config(TINY, _ckpt({"out": out}, "out", lm_dirs["ckpt"]))
    with pytest.raises(ConfigError, match=r"does not match model\.checkpoint's tokenizer"):
        load_config(TINY, _ckpt({"out": out}, "out", lm_dirs["other"]))


def test_scratch_run_with_a_tokenizer_directory(lm_dirs, tmp_path):
    """The experiment grid's shape: a scratch model and a shared tokenizer directory (control tokens in it)."""
    assert load_config(TINY, [f"tokenizer.source={lm_dirs['own']}"]).tokenizer.source == str(lm_dirs["own"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"tokenizer\.source \(override\): .*empty: no tokenizer files"):
        load_config(TINY, [f"tokenizer.source={tmp_path / 'empty'}"])
    spec = tmp_path / "tokens.yaml"
    spec.write_text("tags:\n  - {role: good, string: 'Ġthe'}\n  - {role: bad, string: '<|bad|>'}\n")
    with pytest.raises(ConfigError, match=r"tokenizer\.source.*already an ordinary token"):
        load_config(TINY, [f"tokenizer.source={lm_dirs['own']}", f"tokenizer.control_tokens={spec}"])


@pytest.mark.parametrize("override, why", [
    ("data.sources.².path=/x", "data.sources.² is not an index of the list"),  # str.isdigit, int() refuses: a traceback
    ("data.sources.٠.weight=3", "data.sources.٠ is not an index of the list"),  # int() read it as 0
    ("model.config.²=1", "²: unknown key"),  # a mapping key: the origin of the field was parsed as an index
])
def test_an_index_is_ascii_digits(override, why):
    with pytest.raises(ConfigError, match=why):
        load_config(TINY, [override])


def test_an_unknown_key_with_characters_that_do_not_show_says_so():
    """A zero-width space pasted into a key was reported as `train.max\u200b_steps: unknown key; did you mean
    train.max_steps?`, the two names looking the same."""
    with pytest.raises(ConfigError, match=r"unknown key 'max\\u200b_steps', with characters that do not show"):
        load_config(TINY, ["train.max\u200b_steps=5"])
