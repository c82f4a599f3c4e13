"""The configs the docs give a wheel user to copy (`# my-run.yaml`, `# my-grid.yaml` blocks) load as they stand:
someone without a checkout has no `recipes/configs/` or `examples/grids/` to start from, only these."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from condpt.config import read_config
from condpt.experiment_config import GridConfig

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_YAML = re.compile(r"^```yaml\n# (my-[\w-]+\.yaml)\b(.*?)\n(.*?)^```", re.MULTILINE | re.DOTALL)

QUOTED = [(f"{doc.name}:{name}", name, header, body) for doc in DOCS
          for name, header, body in _YAML.findall(doc.read_text("utf-8"))]


def _overrides(header: str) -> list[str]:
    """The `key=value` words of the block's first line (its command); a `$(...)` value stands for a path."""
    return [re.sub(r"\$\(.*\)", "/a/checkpoint", w) for w in header.split() if re.match(r"[\w.]+=", w)]


def test_the_docs_quote_the_configs():
    """The extraction works (a regex that matched nothing would pass every test below)."""
    assert {"my-run.yaml", "my-grid.yaml", "my-smollm2.yaml"} <= {q[1] for q in QUOTED}


@pytest.mark.parametrize("where,name,header,body", QUOTED, ids=[q[0] for q in QUOTED])
def test_quoted_config_loads(where, name, header, body, tmp_path):
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    if "grid" in name:
        cfg = GridConfig.from_yaml(path)  # also validates each arm against its recipe, as `condpt experiment` does
        assert cfg.arms, where
    else:
        # the run config with its command's overrides, without its inputs on disk (the reader's own data)
        cfg = read_config(path, _overrides(header))
        assert cfg.output_dir, where
