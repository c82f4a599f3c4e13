"""The progress bars `build_datasets` prints: one per pass, each naming its step (two passes over the same
documents, e.g. held-out/rest or kept/set-aside, used to print the same bare "Map"/"Filter" bar twice)."""

from __future__ import annotations

import json
import re

import datasets
import pytest

from condpt.sequences import DataConfig, SourceConfig, build_datasets
from tokenizer_ext import ControlTokens, add_control_tokens


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "docs.jsonl"
    with path.open("w", encoding="utf-8") as f:
        for i in range(60):
            bad = i % 4 == 0
            f.write(json.dumps({"id": f"d{i}", "text": f"document {i}: " + ("doom " if bad else "calm ") * 20,
                                "tag": "bad" if bad else "good", "score": 0.9 if bad else 0.1}) + "\n")
    return path


@pytest.mark.parametrize("mode", ["condition", "filter"])
def test_each_pass_has_its_own_named_bar(source, mode, capfd):
    from condpt.tiny import gpt2_tokenizer

    tok = gpt2_tokenizer()
    manifest = add_control_tokens(tok, ControlTokens())
    cfg = DataConfig(sources=[SourceConfig(path=source)], block_size=32, heldout_fraction=0.2,
                     policy={"mode": mode})
    datasets.enable_progress_bars()
    datasets.disable_caching()  # every pass runs (and shows its bar), whatever earlier tests cached
    try:
        build_datasets(cfg, tok, manifest, seed=0)
    finally:
        datasets.enable_caching()
    err = capfd.readouterr().err
    # A bar's title is what precedes its first "  0%|".
    titles = re.findall(r"(?:^|[\r\n])([^\r\n%|]*?):\s+0%\|", err)
    assert titles, err
    assert "Map" not in titles and "Filter" not in titles, titles
    assert len(titles) == len(set(titles)), titles
