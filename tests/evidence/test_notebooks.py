"""The research notebooks in examples/ run top to bottom on a tiny setting (real recipe, tiny model)."""

from __future__ import annotations

from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["01_prophecy_world_pipeline.ipynb", "02_control_tokens_existing_checkpoint.ipynb"])
def test_notebook_executes(name, tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("CONDPT_NOTEBOOK_TINY", "1")
    monkeypatch.setenv("CONDPT_NOTEBOOK_OUT", str(tmp_path))
    nb = nbformat.read(EXAMPLES / name, as_version=4)
    NotebookClient(nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    if name.startswith("01"):
        assert (tmp_path / "results.png").is_file()
        assert (tmp_path / "mle" / "final" / "config.json").is_file()
