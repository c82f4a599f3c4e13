"""Shared by the kill-and-re-run tests: a run killed after its N-th chunk, input files, output bytes."""

from __future__ import annotations

from pathlib import Path

from condpt.tagging import chunked


def crash_after(monkeypatch, n_chunks: int) -> None:
    """Make `ChunkWriter.finish` raise KeyboardInterrupt (as a SIGKILL would stop it) once `n_chunks` are done."""
    real = chunked.ChunkWriter.finish
    calls = {"n": 0}

    def finish(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] > n_chunks:
            raise KeyboardInterrupt("killed")
        return real(self, *a, **kw)

    monkeypatch.setattr(chunked.ChunkWriter, "finish", finish)


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def output_files(out: Path) -> dict[str, bytes]:
    """Every file of a tagging output but the wall-clock throughput (timing/, and report.html, which shows it) and
    datatrove's logs/ (timestamped logs and stats; its completions are checked by the re-run): what must be
    byte-identical between a clean run and a killed-then-re-run one."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()
            and not {"timing", "logs"} & set(p.relative_to(out).parts) and p.name != "report.html"}
