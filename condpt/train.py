"""The training loop behind `condpt.recipe` (`condpt train`): accelerate (+ DeepSpeed ZeRO-2/3) conditional pretraining.

Shaped like the accelerate examples: the `Accelerator` comes first (gloo forced on CPU, which 2-process
DeepSpeed needs), preprocessing runs under `main_process_first`, then `prepare`, `accumulate`, `backward`.
Everything a run needs is in one `RunConfig`; everything it writes is under `output_dir`:

    run_config.yaml        the resolved config
    tokenizer/             tokenizer + condpt_tokens.json (built once, reused on resume)
    cache/data-<key>/      packed train/held-out blocks (built once by the main process)
    cache/rows-<key>       the sources passed the row-by-row check (`condpt.inputs.checked_rows`)
    checkpoints/step_N/    accelerate `save_state` (every rank takes part) + run_config.yaml + trainer_state.json
    metrics.jsonl          one line per logged step / evaluation / event
    final/                 `save_pretrained` model + tokenizer + condpt_tokens.json; its generation config bans
                           every control id, so a plain `generate` cannot set a condition (mode route: the
                           ablated model, routed units removed; after the coherence fine-tune if configured)
    final-unablated/       mode route only: the model as the main steps left it, routed units included
                           (routed.safetensors, route.json); written before any coherence fine-tune, which
                           trains the ablated model only

The pieces the loop calls have their own modules: the tokenizer (`condpt.tokenizer`), the cached blocks
(`condpt.data_cache`), the model and its FLOPs (`condpt.model`), the losses by tag (`condpt.losses`) and what a
finished run leaves in final/ (`condpt.export`).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from condpt.checkpoints import load_checkpoint, resume_point
from condpt.config import RunConfig
from condpt.data_cache import check_sources, prepare_data, too_little
from condpt.export import export, finished
from condpt.losses import loss_by_tag, mean_loss, tag_sums, token_losses
from condpt.model import build_model, count_params, flops_per_token, measure_matmul_peak
from condpt.routing import good_targets, route_mask, route_tokens, router_of
from condpt.tokenizer import prepare_tokenizer

# --------------------------------------------------------------------------------------------------
# checkpoints and metrics


class MetricsLog:
    """OUTPUT_DIR/metrics.jsonl, written by the main process only; on resume, lines past the resumed
    step (from a run that died between checkpoints) are dropped so the file reads as one run."""

    def __init__(self, path: Path, enabled: bool, resume_step: int | None):
        self.path, self.enabled = path, enabled
        if enabled and resume_step is not None and path.is_file():
            keep = [ln for ln in path.read_text(encoding="utf-8").splitlines()
                    if ln.strip() and json.loads(ln).get("step", 0) <= resume_step]
            path.write_text("".join(k + "\n" for k in keep), encoding="utf-8")
        elif enabled and resume_step is None:
            path.write_text("", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")


class SaveFailed(OSError):
    """A checkpoint the disk could not take (full, gone read-only): one line naming it, not a traceback."""


# A failed save with less room than this left on its filesystem is taken for a full disk, whatever the writer
# raised (torch's zip writer says "unexpected pos", safetensors its own error class).
FULL_DISK_BYTES = 64 << 20


def _save_failed(path: Path, e: Exception) -> SaveFailed | None:
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        free = None
    if not isinstance(e, OSError) and (free is None or free >= FULL_DISK_BYTES):
        return None  # not the disk: the writer's own error, traceback and all
    room = f" ({free / 2**20:.1f} MiB free there)" if free is not None else ""
    why = " ".join(str(e).split())[:300]
    return SaveFailed(f"cannot save checkpoint {path}{room}: {why}; it was removed, the last complete checkpoint "
                      "is kept: make room and rerun to resume from it")


class _StopFlag:
    """Set by SIGTERM/SIGINT; checked (and agreed on by every rank) once per optimizer step."""

    def __init__(self) -> None:
        self.signal: int | None = None
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handler)

    def _handler(self, signum, frame) -> None:
        self.signal = signum


# --------------------------------------------------------------------------------------------------
# the accelerator, the optimizer and DeepSpeed's settings


def _make_accelerator(cfg: RunConfig):
    from accelerate import Accelerator, DataLoaderConfiguration, InitProcessGroupKwargs
    from accelerate.utils import GradientAccumulationPlugin

    handlers = []
    launched = "WORLD_SIZE" in os.environ or os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true"
    if launched and not torch.cuda.is_available():
        # accelerate leaves the backend unset without a GPU; DeepSpeed then counts one process.
        handlers.append(InitProcessGroupKwargs(backend="gloo"))
    return Accelerator(
        gradient_accumulation_plugin=GradientAccumulationPlugin(
            num_steps=cfg.train.grad_accum, sync_with_dataloader=False
        ),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=cfg.seed),
        kwargs_handlers=handlers,
        log_with=cfg.train.report_to or None,
        project_dir=str(cfg.output_dir),
    )


def _optimizer(model, cfg: RunConfig) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.optim.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.optim.lr, betas=cfg.optim.betas, eps=cfg.optim.eps,
                             fused=False, foreach=True)


def _configure_deepspeed(accelerator, cfg: RunConfig) -> None:
    """Fill DeepSpeed "auto" fields that only the run config knows (clipping)."""
    plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    if plugin is None:
        return
    ds = plugin.deepspeed_config
    if ds.get("gradient_clipping", "auto") == "auto":
        ds["gradient_clipping"] = cfg.optim.grad_clip
    for key in ("optimizer", "scheduler"):
        if key in ds:
            raise ValueError(f"the DeepSpeed config must not define `{key}`: condpt creates AdamW and sets the "
                             "learning rate itself (remove the section from the JSON)")


# --------------------------------------------------------------------------------------------------
# the loop, in parts: what it works with (Loop), what it changes (TrainState), one micro-batch, one log line,
# one evaluation, one checkpoint


@dataclass(frozen=True)
class Loop:
    """What the loop works with and never rebinds: the prepared model, optimizer and loaders, the run's
    tokenizer, files and constants."""

    cfg: RunConfig
    accelerator: Any
    out: Path
    tokenizer: Any
    manifest: Any
    model: Any
    optimizer: torch.optim.Optimizer
    train_dl: Any
    eval_dl: Any | None  # None: no held-out blocks
    micro_per_epoch: int  # micro-batches per epoch, cut to whole optimizer steps
    flops_per_token: float
    input_keys: tuple[str, ...]
    metrics: MetricsLog
    peak_flops: float  # per process: the MFU denominator
    route_index: int | None = None  # mode route: the tag_index of the bad role (its tokens are routed)

    @property
    def stop_at(self) -> int:
        return self.cfg.train.stop_after or self.cfg.total_steps

    @property
    def roles(self) -> list[str]:
        return self.manifest.roles

    @property
    def deepspeed(self) -> bool:
        return self.accelerator.state.deepspeed_plugin is not None


@dataclass
class TrainState:
    """What the loop changes: the optimizer step, the micro-batches consumed, the learning rate last set, and the
    logging window (loss sums and token counts per tag, blocks and start time since the last metrics line)."""

    step: int
    micro_done: int
    window: torch.Tensor
    lr: float = 0.0
    window_blocks: int = 0
    window_t0: float = field(default_factory=time.perf_counter)
    last: dict[str, Any] = field(default_factory=dict)

    def reset_window(self) -> None:
        self.window.zero_()
        self.window_blocks, self.window_t0 = 0, time.perf_counter()


def model_inputs(batch: dict[str, torch.Tensor], keys: tuple[str, ...]) -> dict[str, Any]:
    """The forward-pass arguments. Position ids that restart per document make transformers mask attention
    across documents, but only without a KV cache (models create one when use_cache is on, and then skip the
    packed-sequence mask)."""
    return {**{k: batch[k] for k in keys}, "use_cache": False}


def dropout_seed(seed: int, step: int, rank: int) -> int:
    """Dropout masks depend only on (seed, step, rank): a resumed run replays them exactly."""
    return seed * 1_000_003 + step * 1009 + rank


def stop_reason(preempted: bool, step: int, stop_at: int, last_step: int) -> str | None:
    """Why the loop ends early at this step (with a checkpoint), or None. `last_step`: the run's last step
    (`train.max_steps` + any coherence steps)."""
    if preempted:
        return "preempted"
    return "stopped" if step == stop_at < last_step else None


def _prepare(cfg: RunConfig, accelerator, model, train_ds, heldout_ds):
    """Model, optimizer and loaders through `accelerator.prepare` (no eval loader without held-out blocks), and
    the micro-batches per epoch, cut to whole optimizer steps."""
    from torch.utils.data import DataLoader

    t = cfg.train
    train_dl = DataLoader(train_ds, batch_size=t.micro_batch_size, shuffle=True, drop_last=True,
                          num_workers=t.num_workers)
    eval_dl = DataLoader(heldout_ds, batch_size=t.micro_batch_size, shuffle=False, num_workers=t.num_workers)
    optimizer = _optimizer(model, cfg)
    _configure_deepspeed(accelerator, cfg)
    if len(heldout_ds) > 0:
        model, optimizer, train_dl, eval_dl = accelerator.prepare(model, optimizer, train_dl, eval_dl)
    else:
        (model, optimizer, train_dl), eval_dl = accelerator.prepare(model, optimizer, train_dl), None
    micro_per_epoch = (len(train_dl) // t.grad_accum) * t.grad_accum
    if micro_per_epoch == 0:
        raise too_little(cfg, len(train_ds), accelerator.num_processes)
    return model, optimizer, train_dl, eval_dl, micro_per_epoch


def _peak_flops(cfg: RunConfig, accelerator) -> float:
    """`train.peak_flops`, else a matmul measured in every process (in the training dtype), averaged."""
    if cfg.train.peak_flops:
        return cfg.train.peak_flops
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(str(accelerator.mixed_precision), torch.float32)
    measured = torch.tensor(measure_matmul_peak(accelerator.device, dtype), device=accelerator.device)
    return float(accelerator.reduce(measured, "mean"))


def _tokenizer_settings_changed(cfg: RunConfig, out: Path) -> bool:
    """OUTPUT_DIR/tokenizer (built once, then reused) was built under other tokenizer settings than `cfg`'s, by
    the run whose run_config.yaml is in `out`: it is rebuilt. A resumed checkpoint always shares them
    (`condpt.checkpoints`), so only a run started over under another tokenizer rebuilds it."""
    import yaml

    try:
        then = yaml.safe_load((out / "run_config.yaml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False  # no earlier run here (or none that got as far as building a tokenizer)
    now = yaml.safe_load(cfg.to_yaml())

    def deciding(c: Any) -> Any:  # what the tokenizer is built from: a BPE trained on the sources, or a checkpoint's
        if not isinstance(c, dict):
            return None
        tok = c.get("tokenizer") or {}
        sources = (c.get("data") or {}).get("sources") if tok.get("source") == "train-bpe" else None
        return tok, (c.get("model") or {}).get("checkpoint"), sources

    return deciding(then) != deciding(now)


def _set_up(cfg: RunConfig, accelerator, out: Path) -> tuple[Loop, TrainState]:
    """Tokenizer, data, model, optimizer and loaders, prepared; the state restored from a checkpoint if any;
    the start of the run logged."""
    from accelerate.utils import set_seed

    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        if _tokenizer_settings_changed(cfg, out):  # run_config.yaml is still the last run's here
            shutil.rmtree(out / "tokenizer", ignore_errors=True)
        (out / "run_config.yaml").write_text(cfg.to_yaml(), encoding="utf-8")
    accelerator.wait_for_everyone()
    check_sources(cfg, accelerator)  # before a BPE is trained on them
    set_seed(cfg.seed)
    with accelerator.main_process_first():
        tokenizer, manifest = prepare_tokenizer(cfg, out / "tokenizer")
    train_ds, heldout_ds = prepare_data(cfg, tokenizer, manifest, accelerator, out)
    model = build_model(cfg, tokenizer, manifest)
    fpt, n_params = flops_per_token(model, cfg.data.block_size), count_params(model)
    model, optimizer, train_dl, eval_dl, micro_per_epoch = _prepare(cfg, accelerator, model, train_ds, heldout_ds)

    ckpt, step = resume_point(cfg.train.resume, out), 0
    if ckpt is not None:
        load_checkpoint(accelerator, ckpt)
        step = json.loads((ckpt / "trainer_state.json").read_text())["step"]
    metrics = MetricsLog(out / "metrics.jsonl", accelerator.is_main_process, step if ckpt is not None else None)
    if ckpt is not None:
        metrics.write({"step": step, "event": "resumed", "from": str(ckpt)})
    if cfg.train.report_to:
        accelerator.init_trackers("condpt", config=json.loads(cfg.model_dump_json()))
    peak = _peak_flops(cfg, accelerator)
    if accelerator.is_main_process:
        metrics.write({"step": step, "event": "start", "processes": accelerator.num_processes,
                       "params": n_params, "flops_per_token": fpt, "peak_flops_per_process": peak,
                       "train_blocks": len(train_ds), "heldout_blocks": len(heldout_ds),
                       "distributed_type": str(accelerator.distributed_type)})

    input_keys = ("input_ids", "position_ids") if cfg.data.document_masking else ("input_ids",)
    route_index = None
    if cfg.data.policy.mode == "route":
        if cfg.data.policy.bad_role not in manifest.roles:
            raise ValueError(f"data.policy.bad_role {cfg.data.policy.bad_role!r} has no control token to route by "
                             f"(roles: {manifest.roles})")
        route_index = manifest.roles.index(cfg.data.policy.bad_role)
    loop = Loop(cfg, accelerator, out, tokenizer, manifest, model, optimizer, train_dl, eval_dl, micro_per_epoch,
                fpt, input_keys, metrics, peak, route_index)
    window = torch.zeros(2, len(manifest.roles) + 1, dtype=torch.float64, device=accelerator.device)
    return loop, TrainState(step=step, micro_done=step * cfg.train.grad_accum, window=window)


def _micro_batches(loop: Loop, micro_done: int):
    """(epoch, batch) from micro-batch `micro_done` on, epoch after epoch; the data order of an epoch depends on
    (seed, epoch) only, so a resumed run skips into the same order."""
    while True:
        epoch, skip = divmod(micro_done, loop.micro_per_epoch)
        loop.train_dl.set_epoch(epoch)
        loader = loop.accelerator.skip_first_batches(loop.train_dl, skip) if skip else loop.train_dl
        for i, batch in enumerate(loader, start=skip):
            if i >= loop.micro_per_epoch:
                break
            yield epoch, batch
        micro_done = (epoch + 1) * loop.micro_per_epoch


def learning_rate(cfg: RunConfig, step: int) -> float:
    """The learning rate of optimizer step `step` (0-based): the schedule over `train.max_steps`, then the
    coherence fine-tune's constant `optim.lr` × `lr_scale`. A pure function of the step, so resuming is exact."""
    if step < cfg.train.max_steps:
        return cfg.optim.lr_at(step, cfg.train.max_steps)
    return cfg.optim.lr * cfg.data.policy.route.coherence.lr_scale


def _trained_targets(loop: Loop, batch: dict[str, torch.Tensor], step: int) -> torch.Tensor:
    """[B, T-1]: the target tokens the loss of step `step` averages: every labelled one, and in the coherence
    fine-tune only those of documents not tagged bad."""
    if step < loop.cfg.train.max_steps:
        return batch["labels"][:, 1:] != -100
    return good_targets(batch["labels"], batch["tag_index"], loop.route_index)


def _phase(loop: Loop, step: int) -> dict[str, str]:
    """Marks the metrics lines of the coherence fine-tune (steps after `train.max_steps`)."""
    return {"phase": "coherence"} if step > loop.cfg.train.max_steps else {}


def _micro_step(loop: Loop, state: TrainState, batch: dict[str, torch.Tensor]) -> bool:
    """Forward and backward on one micro-batch (the optimizer steps on the last of `grad_accum`); True when an
    optimizer step finished."""
    cfg, acc, model = loop.cfg, loop.accelerator, loop.model
    if state.micro_done % cfg.train.grad_accum == 0:
        state.lr = learning_rate(cfg, state.step)
        for group in loop.optimizer.param_groups:
            group["lr"] = state.lr
        torch.manual_seed(dropout_seed(cfg.seed, state.step, acc.process_index))
    router = router_of(acc.unwrap_model(model)) if loop.route_index is not None else None
    mask = route_mask(batch["tag_index"], loop.route_index, batch["position_ids"]) if router is not None else None
    with acc.accumulate(model), route_tokens(router, mask):  # backward inside: checkpointing re-runs forward
        logits = model(**model_inputs(batch, loop.input_keys)).logits
        losses = token_losses(logits, batch["labels"])
        trained = _trained_targets(loop, batch, state.step)
        acc.backward((losses * trained).sum() / trained.sum().clamp(min=1))
        if acc.sync_gradients and not loop.deepspeed and cfg.optim.grad_clip > 0:
            acc.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
        loop.optimizer.step()
        loop.optimizer.zero_grad(set_to_none=True)
    state.window += tag_sums(losses, batch["labels"], batch["tag_index"], len(loop.roles))
    state.window_blocks += batch["input_ids"].shape[0]
    state.micro_done += 1
    if state.micro_done % cfg.train.grad_accum:
        return False
    state.step += 1
    return True


def _log_window(loop: Loop, state: TrainState, epoch: int) -> dict[str, Any]:
    """One metrics line: the window since the last line, summed over all ranks; then a fresh window."""
    acc, cfg, t = loop.accelerator, loop.cfg, loop.cfg.train
    stats = acc.reduce(state.window, "sum")
    blocks = acc.reduce(torch.tensor(state.window_blocks, device=acc.device), "sum")
    tps = float(blocks) * cfg.data.block_size / max(time.perf_counter() - state.window_t0, 1e-9)
    record = {
        "step": state.step, "epoch": epoch, "loss": round(mean_loss(stats), 6),
        "loss_by_tag": loss_by_tag(stats, loop.roles), "lr": state.lr, "tokens_per_s": round(tps, 1),
        "mfu": round(loop.flops_per_token * tps / (loop.peak_flops * acc.num_processes), 5),
        "tokens": state.step * t.grad_accum * t.micro_batch_size * acc.num_processes * cfg.data.block_size,
        **_phase(loop, state.step),
    }
    loop.metrics.write(record)
    if t.report_to:
        acc.log({"loss": record["loss"], "lr": state.lr, "tokens_per_s": tps, "mfu": record["mfu"],
                 **{f"loss/{k}": v for k, v in record["loss_by_tag"].items()}}, step=state.step)
    state.reset_window()
    return record


def _evaluate(loop: Loop) -> dict[str, Any]:
    """Loss, perplexity and loss by tag on up to `eval_batches` held-out micro-batches per rank."""
    model, roles = loop.model, loop.roles
    model.eval()
    stats = torch.zeros(2, len(roles) + 1, dtype=torch.float64, device=loop.accelerator.device)
    with torch.no_grad():
        for i, batch in enumerate(loop.eval_dl):
            if i >= loop.cfg.train.eval_batches:
                break
            router = router_of(loop.accelerator.unwrap_model(model)) if loop.route_index is not None else None
            mask = route_mask(batch["tag_index"], loop.route_index, batch["position_ids"]) if router is not None else None
            with route_tokens(router, mask):  # the function training optimises (routed units where routed)
                losses = token_losses(model(**model_inputs(batch, loop.input_keys)).logits, batch["labels"])
            stats += tag_sums(losses, batch["labels"], batch["tag_index"], len(roles))
    model.train()
    stats = loop.accelerator.reduce(stats, "sum")
    total = mean_loss(stats)
    return {"loss": round(total, 6), "ppl": round(math.exp(min(total, 50)), 4), "loss_by_tag": loss_by_tag(stats, roles)}


def _save_checkpoint(loop: Loop, step: int) -> Path:
    """OUTPUT_DIR/checkpoints/step_N: every rank saves its shards, then the main process marks it complete
    (trainer_state.json) and drops all but the newest `keep_last`."""
    acc, out = loop.accelerator, loop.out
    path = out / "checkpoints" / f"step_{step:08d}"
    try:
        acc.save_state(str(path))  # every rank: DeepSpeed shards are per rank
    except Exception as e:
        failed = _save_failed(path, e)
        if failed is None:
            raise
        shutil.rmtree(path, ignore_errors=True)  # its space back; no trainer_state.json: never resumed anyway
        raise failed from e
    acc.wait_for_everyone()
    if acc.is_main_process:  # the config first: a resume under another one is refused (condpt.checkpoints)
        (path / "run_config.yaml").write_text(loop.cfg.to_yaml(), encoding="utf-8")
        (path / "trainer_state.json").write_text(json.dumps({"step": step, "seed": loop.cfg.seed}) + "\n")
        done = sorted((out / "checkpoints").glob("step_*/trainer_state.json"))
        for old in done[: -loop.cfg.train.keep_last]:
            shutil.rmtree(old.parent, ignore_errors=True)
    acc.wait_for_everyone()
    return path


def _after_step(loop: Loop, state: TrainState, epoch: int, stop_flag: _StopFlag) -> str | None:
    """Log, evaluate and checkpoint as due after optimizer step `state.step`; the reason to end early, if any.
    Every rank takes part in the stop vote, every step, so all of them end at the same step."""
    t, step, stop_at = loop.cfg.train, state.step, loop.stop_at
    if step % t.log_every == 0 or step in (stop_at, t.max_steps):
        state.last = _log_window(loop, state, epoch)
    if loop.eval_dl is not None and t.eval_every and step % t.eval_every == 0 and step < t.max_steps:
        loop.metrics.write({"step": step, "eval": _evaluate(loop)})
    stop = torch.tensor(0 if stop_flag.signal is None else 1, device=loop.accelerator.device)
    reason = stop_reason(bool(loop.accelerator.reduce(stop, "sum") > 0), step, stop_at, loop.cfg.total_steps)
    if reason or (t.save_every and step % t.save_every == 0):
        path = _save_checkpoint(loop, step)
        if reason:
            loop.metrics.write({"step": step, "event": reason, "checkpoint": str(path)})
    return reason


def _steps(loop: Loop, state: TrainState, stop_flag: _StopFlag, bar, until: int) -> str:
    """Optimizer steps until step `until`; "done", or the reason the run ends early (with a checkpoint)."""
    if state.step >= until:
        return "done"
    for epoch, batch in _micro_batches(loop, state.micro_done):
        if not _micro_step(loop, state, batch):
            continue
        bar.update(1)
        reason = _after_step(loop, state, epoch, stop_flag)
        if state.last.get("step") == state.step:  # a metrics line was just written
            bar.set_postfix(loss=f"{state.last['loss']:.3f}", tok_s=f"{state.last['tokens_per_s']:.0f}")
        if reason:
            return reason
        if state.step >= until:
            return "done"
    raise AssertionError("unreachable: _micro_batches never ends")


def _fresh_moments(optimizer) -> None:
    """Make AdamW start afresh (moments and step count zeroed in place): the main steps' momentum holds the
    gradient of bad tokens, which would otherwise keep moving the ablated model for the first ~20 steps.
    The torch optimizer is the innermost `.optimizer` (accelerate's wrapper, then DeepSpeed's ZeRO
    optimizer, which steps it on its fp32 partitions: zeroing them in place works under ZeRO-2 and -3)."""
    while hasattr(optimizer, "optimizer"):
        optimizer = optimizer.optimizer
    for state in optimizer.state.values():
        for value in state.values():
            if torch.is_tensor(value):
                value.zero_()
        if "step" in state and not torch.is_tensor(state["step"]):
            state["step"] = 0


def _coherence(loop: Loop, state: TrainState, stop_flag: _StopFlag, bar) -> str:
    """The paper's coherence fine-tune (`data.policy.route.coherence`), in the same engine: write
    final-unablated/ (the model the main steps made), switch the router to the ablated state (routed units
    zeroed, so the model computes what final/ will; no shape changes, which ZeRO-3 could not follow) and train
    `coherence.steps` more steps on the tokens of documents not tagged bad (`_trained_targets`, `learning_rate`).
    AdamW starts afresh (`_fresh_moments`), as the paper's does. Resumable: a checkpoint of this phase has a
    step past `train.max_steps`, and the data, learning rate and loss mask are functions of the step."""
    cfg, acc, out = loop.cfg, loop.accelerator, loop.out
    max_steps = cfg.train.max_steps
    if state.step == max_steps:
        if loop.eval_dl is not None:  # the routed model as trained (route masks on), as without a coherence phase
            loop.metrics.write({"step": max_steps, "eval": _evaluate(loop)})
        export(acc, loop.model, loop.tokenizer, loop.manifest, cfg, out, ablated=False)
        _fresh_moments(loop.optimizer)
    elif not (out / "final-unablated" / "config.json").is_file():
        raise FileNotFoundError(f"{out / 'final-unablated'}: missing, but the run resumes inside the coherence "
                                f"fine-tune (step {state.step} > train.max_steps {max_steps}), whose model is no "
                                "longer the one the main steps made; resume from a checkpoint at or before "
                                f"step {max_steps} (train.resume) to write it again")
    router_of(acc.unwrap_model(loop.model)).ablated = True
    if state.step == max_steps and loop.eval_dl is not None:  # what ablation costs, before the fine-tune
        loop.metrics.write({"step": max_steps, "phase": "coherence", "eval": _evaluate(loop)})
    state.reset_window()
    return _steps(loop, state, stop_flag, bar, loop.stop_at)


def train(cfg: RunConfig) -> dict[str, Any]:
    """Run (or resume) training as configured; returns the last logged metrics and the run status."""
    from tqdm.auto import tqdm

    accelerator = _make_accelerator(cfg)  # first: it sets up the process group
    stop_flag = _StopFlag()
    out = Path(cfg.output_dir)
    if cfg.train.resume == "auto" and finished(out, cfg):
        return {"status": "done", "step": cfg.train.max_steps, "final": str(out / "final"), "skipped": True}
    loop, state = _set_up(cfg, accelerator, out)

    bar = tqdm(total=cfg.total_steps, initial=state.step, disable=not accelerator.is_main_process,
               desc="condpt", dynamic_ncols=True)
    loop.model.train()
    status = _steps(loop, state, stop_flag, bar, min(loop.stop_at, cfg.train.max_steps))
    if status == "done" and cfg.coherence_steps:
        status = _coherence(loop, state, stop_flag, bar)
    bar.close()

    result: dict[str, Any] = {"status": status, "step": state.step, "last": state.last}
    if status == "done":
        if loop.eval_dl is not None:
            result["eval"] = _evaluate(loop)
            loop.metrics.write({"step": state.step, "eval": result["eval"], **_phase(loop, state.step)})
        result["final"] = str(export(accelerator, loop.model, loop.tokenizer, loop.manifest, cfg, out,
                                      unablated=not cfg.coherence_steps))
        loop.metrics.write({"step": state.step, "event": "done", "final": result["final"]})
    if cfg.train.report_to:
        accelerator.end_training()
    accelerator.wait_for_everyone()
    return result
