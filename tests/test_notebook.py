"""The walkthrough notebook runs top to bottom (fast mode), so it never rots."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "01_walkthrough.ipynb"


@pytest.mark.slow
def test_walkthrough_executes_without_errors(tmp_path: Path, multi30k_root: Path, monkeypatch) -> None:
    monkeypatch.setenv("SEQ2SEQ_LIT_NOTEBOOK_FAST", "1")
    monkeypatch.setenv("MULTI30K", str(multi30k_root))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # Raises CellExecutionError, naming the cell, on any error.
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    text = "".join(o.get("text", "") for o in outputs)
    assert "by hand" in text and "greedy BLEU" in text and "beam 5 BLEU" in text and "Transformer beam 5 BLEU" in text
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 2  # curves and attention
    assert "exit code 0" in text
    assert (tmp_path / "walkthrough_run" / "sweep" / "1").is_dir()
    # The stored notebook carries its outputs, so it reads well on GitHub.
    stored = nbformat.read(NOTEBOOK, as_version=4)
    assert all(cell.get("outputs") for cell in stored.cells if cell.cell_type == "code")
