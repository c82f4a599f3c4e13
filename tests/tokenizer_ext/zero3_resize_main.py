"""Run by test_zero3.py under `accelerate launch` (2 CPU processes, ZeRO-3 with zero.Init).

argv: OUT_DIR SRC_CHECKPOINT... Loads each checkpoint partitioned, adds the control tokens, resizes with
`resize_model_for_tokens`, then writes (rank 0) the gathered embedding/head weights and the logits of one
ordinary sentence computed by the DeepSpeed engine, and takes one optimiser step to show the engine trains.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import InitProcessGroupKwargs
from transformers import AutoModelForCausalLM, AutoTokenizer

from tokenizer_ext import add_control_tokens, encode_untrusted
from tokenizer_ext.resize import resize_model_for_tokens
from tokenizer_ext.sample_text import SAMPLE_TEXT


def main() -> None:
    out = Path(sys.argv[1])
    acc = Accelerator(kwargs_handlers=[InitProcessGroupKwargs(backend="gloo")])
    assert acc.num_processes == 2, acc.num_processes
    for src in map(Path, sys.argv[2:]):
        run(acc, src, out / f"zero3_{src.name}.pt")
        acc.free_memory()


def run(acc: Accelerator, src: Path, result: Path) -> None:
    tok = AutoTokenizer.from_pretrained(str(src))
    model = AutoModelForCausalLM.from_pretrained(str(src))
    emb = model.get_input_embeddings().weight
    assert hasattr(emb, "ds_id") and emb.shape[0] == 0, "expected ZeRO-3 partitioned parameters"

    manifest = add_control_tokens(tok, None)
    sizes = resize_model_for_tokens(model, tok, manifest, init="mean", pad_to_multiple_of=64)
    ids = torch.tensor([encode_untrusted(tok, SAMPLE_TEXT[:1])[0][:32]])

    import deepspeed

    weights = {}
    for name, mod in (("in", model.get_input_embeddings()), ("out", model.get_output_embeddings())):
        with deepspeed.zero.GatheredParameters([mod.weight], modifier_rank=None):
            weights[name] = mod.weight.detach().clone()

    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    engine, optimizer = acc.prepare(model, optimizer)
    engine.eval()
    with torch.no_grad():
        logits = engine(input_ids=ids).logits[0].float()
    engine.train()
    loss = engine(input_ids=ids, labels=ids).loss
    acc.backward(loss)
    optimizer.step()
    if acc.is_main_process:
        torch.save({"sizes": sizes, "weights": weights, "logits": logits, "ids": ids,
                    "control_ids": manifest.control_ids, "loss": float(loss)}, result)
    acc.wait_for_everyone()


if __name__ == "__main__":
    main()
