"""tokenizer_ext.pages: a forward pass over a memory-mapped checkpoint leaves its pages out of the resident set, with
the same logits, and never drops a page the process wrote."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from condpt.tiny import tiny_causal_lm
from tokenizer_ext import pages

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and madvise are Linux's")


def _present_pages(ranges) -> int:
    n = 0
    with open("/proc/self/pagemap", "rb") as f:
        for a, b in ranges:
            f.seek(a // pages.PAGE * 8)
            entries = np.frombuffer(f.read((b - a) // pages.PAGE * 8), dtype="<u8")
            n += int(((entries >> np.uint64(63)) & np.uint64(1)).sum())
    return n


@pytest.fixture
def mapped(tmp_path):
    from transformers import AutoModelForCausalLM

    src = tmp_path / "m"
    tiny_causal_lm("llama", 4096, d_model=64, n_layer=2, n_head=2, tie_word_embeddings=False).save_pretrained(src)
    model = AutoModelForCausalLM.from_pretrained(str(src), dtype="auto").eval()
    files = [src / "model.safetensors"]
    ranges = pages.file_mappings(files)
    if not ranges:
        pytest.skip("this transformers/safetensors does not memory-map the weights")
    return model, files, ranges


@torch.no_grad()
def test_pages_handed_back_and_logits_unchanged(mapped):
    model, files, ranges = mapped
    ids = torch.arange(24)[None]
    want = model(input_ids=ids).logits
    total = sum(b - a for a, b in ranges) // pages.PAGE
    assert all(pages.only_file_pages(a, b, chunk_pages=3) for a, b in ranges)
    assert _present_pages(ranges) > total // 2  # a plain forward pass makes the checkpoint resident
    with pages.one_module_resident(model, files) as active:
        assert active
        got = model(input_ids=ids).logits
        assert _present_pages(ranges) < total // 10
        torch.testing.assert_close(model(input_ids=ids).logits, want, rtol=0, atol=0)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert not any(m._forward_hooks for m in model.modules())  # hooks removed on exit


@torch.no_grad()
def test_written_page_disables_it(mapped):
    model, files, ranges = mapped
    w = model.get_input_embeddings().weight
    w[5, 0] = 123.0  # copy-on-write: this page is now the process's own
    assert not all(pages.only_file_pages(a, b, chunk_pages=3) for a, b in ranges)
    with pages.one_module_resident(model, files) as active:
        assert not active
        model(input_ids=torch.tensor([[5]]))
    assert float(w[5, 0]) == 123.0
    with pages.one_module_resident(model, []) as active:
        assert not active
