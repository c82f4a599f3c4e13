"""Multi-node training for real, on loopback: two `accelerate launch` processes, one per "machine"
(`multi-node-zero2-cpu`: num_machines 2, machine_rank 0 and 1, static rendezvous at 127.0.0.1, one CPU process
each, gloo, DeepSpeed ZeRO-2), launched as a cluster launches them (`--machine_rank`, `--main_process_ip`,
`--main_process_port` per node). Both "machines" share one filesystem, as cluster nodes share one: only the
global main process may write the run directory, each rank its own checkpoint shards.

Also, without launching: the multi-node configs hold only keys accelerate 1.15 knows, and resolve to the
torchrun arguments a cluster needs (nodes, processes per node, node rank, rendezvous endpoint).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from condpt.recipe import launch_command
from condpt.shipped import shipped_config

REPO = Path(__file__).resolve().parents[2]
SBATCH = REPO / "recipes" / "slurm" / "multinode.sbatch"
GOLDEN = Path(__file__).parent / "golden" / "zero2_tiny_losses.json"  # test_deepspeed.py's single-machine run
STEPS = 12
# test_deepspeed.py's tiny run, so the losses can be held against its golden curve (2 processes on one machine)
TINY = [
    "model.config={arch: gpt2, d_model: 32, n_layer: 2, n_head: 2}",
    "tokenizer.vocab_size=512", "data.block_size=64", "train.micro_batch_size=4",
    "train.log_every=1", "train.eval_every=0", "train.eval_batches=2", "train.save_every=0", "optim.warmup_steps=2",
    f"train.max_steps={STEPS}",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch_node(rank: int, port: int, out: Path, tag: str, config: str, overrides: list[str]) -> subprocess.Popen:
    """One machine's `accelerate launch`, with the flags a Slurm script passes per node (docs/recipe.md)."""
    node_args = ["--num_machines", "2", "--num_processes", "2", "--machine_rank", str(rank),
                 "--main_process_ip", "127.0.0.1", "--main_process_port", str(port)]
    cmd = launch_command(REPO / "recipes" / "configs" / "tiny-cpu.yaml", [*overrides, f"output_dir={out}"],
                         accelerate_config=shipped_config("accelerate", config), extra_launch_args=node_args)
    log = open(out.parent / f"{tag}-node{rank}.log", "w")  # noqa: SIM115 - lives as long as the process
    proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    _LAUNCHED.append(proc)
    return proc


_LAUNCHED: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def _no_node_left_behind():
    """A failed test leaves no launcher or rank running (each node's launch is its own process group)."""
    yield
    while _LAUNCHED:
        proc = _LAUNCHED.pop()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _start_both(out: Path, tag: str, config: str = "multi-node-zero2-cpu", overrides: list[str] = TINY):
    port = _free_port()
    head = _launch_node(0, port, out, tag, config, overrides)  # it hosts the rendezvous store; the other dials in
    time.sleep(1)
    return [head, _launch_node(1, port, out, tag, config, overrides)]


def _log(out: Path, tag: str) -> str:
    return "\n".join(f"--- node {r} ---\n" + (out.parent / f"{tag}-node{r}.log").read_text()[-3000:] for r in (0, 1))


def _rows(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if x.strip()]


def _loss_rows(out: Path) -> list[dict]:
    return [r for r in _rows(out) if "loss" in r]


@pytest.mark.slow
def test_two_machines_train_preempt_resume_export(tmp_path):
    out = tmp_path / "run"

    # 1. Train, then preempt as Slurm does: SIGTERM to every node's launcher, which forwards it to its rank. The
    # ranks see it at different moments and agree (an all-reduce per step) on one step to checkpoint and stop at.
    nodes = _start_both(out, "first")
    deadline = time.time() + 400
    while time.time() < deadline and all(p.poll() is None for p in nodes):
        if (out / "metrics.jsonl").is_file() and len(_loss_rows(out)) >= 3:
            break
        time.sleep(0.1)
    assert all(p.poll() is None for p in nodes), "a node ended before it could be interrupted:\n" + _log(out, "first")
    for p in reversed(nodes):
        p.send_signal(signal.SIGTERM)
    for p in nodes:
        p.wait(timeout=300)  # a signalled launcher exits non-zero however cleanly its rank stopped
    stopped = [r for r in _rows(out) if r.get("event") == "preempted"]
    assert len(stopped) == 1, _log(out, "first")
    k = stopped[0]["step"]
    assert 3 <= k < STEPS and not (out / "final").exists()
    ckpt = out / "checkpoints" / f"step_{k:08d}"
    assert json.loads((ckpt / "trainer_state.json").read_text())["step"] == k
    # every rank saved its own optimizer partition and RNG state (the node-1 rank through the shared filesystem)
    assert all((ckpt / "pytorch_model" / f"zero_pp_rank_{r}_mp_rank_00_optim_states.pt").is_file() for r in (0, 1))
    assert (ckpt / "random_states_0.pkl").is_file() and (ckpt / "random_states_1.pkl").is_file()

    # 2. Relaunch both machines with the same command: they resume from the checkpoint and finish.
    nodes = _start_both(out, "resume")
    for p in nodes:
        assert p.wait(timeout=400) == 0, _log(out, "resume")
    rows = _rows(out)
    assert [r["from"] for r in rows if r.get("event") == "resumed"] == [str(ckpt)]
    starts = [r for r in rows if r.get("event") == "start"]
    assert len(starts) == 2 and all(s["processes"] == 2 and "DEEPSPEED" in s["distributed_type"] for s in starts)
    # One writer: each step logged once (two nodes both writing would double the lines), the run read as one.
    assert [r["step"] for r in _loss_rows(out)] == list(range(1, STEPS + 1))
    assert [r["event"] for r in rows if r.get("event") in ("preempted", "done")] == ["preempted", "done"]

    # 3. The same losses as 2 processes on one machine (test_deepspeed.py's golden curve): multi-node changes where
    # the ranks run, not what they compute.
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    assert golden["overrides"] == TINY, "test_deepspeed.py's tiny run changed: keep TINY here equal to it"
    for r in _loss_rows(out):
        assert r["loss"] == pytest.approx(golden["steps"][str(r["step"])]["loss"], rel=golden["rtol"]), r["step"]

    # 4. The export reloads and generates without emitting a tag.
    from transformers import AutoModelForCausalLM

    from condpt.generate import Generator
    from tokenizer_ext import Manifest

    final = out / "final"
    assert json.loads((final / "trainer_state.json").read_text())["step"] == STEPS
    manifest = Manifest.load(final)
    model = AutoModelForCausalLM.from_pretrained(str(final))
    assert model.get_input_embeddings().weight.shape[0] >= manifest.self_token.id + 1
    samples = Generator.load(final).generate_ids("The machine", condition="good", n=4, max_new_tokens=8, seed=0)
    assert all({manifest.tag_id(r) for r in manifest.roles}.isdisjoint(s) for s in samples)


_FAKE_SRUN = """#!/bin/bash
# srun for a test: its options ignored, the command started once per node of the job, SLURM_NODEID set
while [[ $1 == --* ]]; do shift; done
pids=()
for ((i = 0; i < SLURM_NNODES; i++)); do SLURM_NODEID=$i "$@" & pids+=($!); sleep 1; done
rc=0; for p in "${pids[@]}"; do wait "$p" || rc=$?; done; exit $rc
"""


@pytest.mark.slow
def test_the_slurm_script_runs_the_gpu_cluster_template_on_loopback(tmp_path):
    """recipes/slurm/multinode.sbatch (the one in docs/recipe.md) with multi-node-zero3.yaml (ZeRO-3, partitioned
    init), under a stand-in `srun`/`scontrol`: 2 nodes × 1 CPU process (fp32, gloo) instead of 4 × 8 GPUs (bf16)."""
    from transformers import AutoModelForCausalLM

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text(_FAKE_SRUN)
    (bin_dir / "scontrol").write_text("#!/bin/sh\necho 127.0.0.1\n")  # `show hostnames LIST`: the head node
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PATH": f"{bin_dir}:{Path(sys.executable).parent}:{os.environ['PATH']}",
           "SLURM_JOB_NODELIST": "node[1-2]", "SLURM_NNODES": "2", "GPUS_PER_NODE": "1", "MIXED_PRECISION": "no",
           "MAIN_PROCESS_PORT": str(_free_port())}
    job = subprocess.Popen(["bash", str(SBATCH), str(REPO / "recipes" / "configs" / "tiny-cpu.yaml"),
                            *TINY[:-1], "train.max_steps=4", f"output_dir={out}"], cwd=tmp_path, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    _LAUNCHED.append(job)
    output, _ = job.communicate(timeout=400)
    (tmp_path / "job.log").write_text(output)
    assert job.returncode == 0, output[-6000:]
    rows = _rows(out)
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3, 4]
    start = next(r for r in rows if r.get("event") == "start")
    assert start["processes"] == 2 and start["params"] > 0  # counted from the partitions (zero.Init)
    # the export holds the gathered weights, whole: nothing missing or mis-shaped (which would load as random init)
    _, info = AutoModelForCausalLM.from_pretrained(str(out / "final"), output_loading_info=True)
    assert not info["missing_keys"] and not info["mismatched_keys"] and not info["unexpected_keys"], info


def test_docs_show_the_slurm_script_as_shipped():
    script = SBATCH.read_text(encoding="utf-8")
    assert script in (REPO / "docs" / "recipe.md").read_text(encoding="utf-8"), "docs/recipe.md: paste the script again"


# --------------------------------------------------------------------------------------------------
# the configs, checked without launching


def _resolve(config: str, *node_args: str):
    """What `accelerate launch --config_file CONFIG NODE_ARGS -m condpt.recipe` hands torchrun on one node
    (accelerate's own parsing and DeepSpeed launch preparation, as `accelerate.commands.launch` calls them)."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env

    argv = ["--config_file", str(shipped_config("accelerate", config)), *node_args, "-m", "condpt.recipe"]
    args, defaults, _ = _validate_launch_command(launch_command_parser().parse_args(argv))
    args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)
    cmd, env = prepare_deepspeed_cmd_env(args)
    return cmd, args, env


@pytest.mark.parametrize("config", ["multi-node-zero2-cpu", "multi-node-zero3"])
def test_multi_node_configs_hold_only_keys_accelerate_knows(config):
    from accelerate.commands.config.config_args import ClusterConfig
    from accelerate.commands.launch import launch_command_parser

    path = shipped_config("accelerate", config)
    ClusterConfig.from_yaml_file(str(path))  # raises on a key accelerate does not know
    raw = yaml.safe_load(path.read_text())
    # accelerate copies deepspeed_config's keys onto its launch arguments: each must be one of them
    options = {a.dest for a in launch_command_parser()._actions}
    assert set(raw["deepspeed_config"]) <= options
    # the pdsh launcher (accelerate's default) would ssh from the head node instead of one launch per node
    assert raw["deepspeed_config"]["deepspeed_multinode_launcher"] == "standard"
    assert raw["num_machines"] > 1 and raw["rdzv_backend"] == "static" and "mixed_precision" not in raw


def test_multi_node_zero3_resolves_to_one_torchrun_per_node():
    cmd, args, env = _resolve("multi-node-zero3", "--machine_rank", "3", "--main_process_ip", "10.1.2.3",
                              "--main_process_port", "29555", "--mixed_precision", "bf16")
    assert cmd is None  # torchrun in the launcher's process, not the `deepspeed` (pdsh) runner
    assert (args.nnodes, args.nproc_per_node, args.node_rank) == ("4", "8", 3)
    assert (args.rdzv_backend, args.rdzv_endpoint) == ("static", "10.1.2.3:29555")
    assert env["ACCELERATE_DEEPSPEED_ZERO3_INIT"] == "true" and env["ACCELERATE_MIXED_PRECISION"] == "bf16"
    assert env["ACCELERATE_DEEPSPEED_CONFIG_FILE"] == "../deepspeed/zero3.json"  # condpt.recipe resolves it


def test_multi_node_cpu_config_resolves_to_two_machines_of_one_process():
    _, args, env = _resolve("multi-node-zero2-cpu", "--machine_rank", "1", "--main_process_port", "29600")
    assert (args.nnodes, args.nproc_per_node, args.node_rank) == ("2", "1", 1)
    assert (args.rdzv_backend, args.rdzv_endpoint) == ("static", "127.0.0.1:29600")
    assert env["ACCELERATE_USE_DEEPSPEED"] == "true" and env["ACCELERATE_DEEPSPEED_CONFIG_FILE"] == "../deepspeed/zero2.json"
