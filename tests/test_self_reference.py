"""The project speaks of itself alone: no file or folder name, line of code, docstring,
comment or document refers to a numbered period of its development history or to a
tracker issue by number. Readers see neither; an experiment is named by what it measured
and, where it matters, by its date and commit.

Scans every file git tracks (and every untracked file git does not ignore, i.e. what the
next commit could add): its path, and each line of a text file. In README.md and under
docs/ the word for a work period is not used at all. Links to other projects' trackers
(a URL such as .../issues/<n>) are fine: they carry no space, '-' or '#' before the number.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

ORDINALS = ("first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|eleventh|"
            "twelfth|thirteenth|fourteenth|fifteenth|twentieth")
EVERYWHERE = [
    re.compile(r"\bsessions?[ _-]*\d+", re.I),                 # a numbered work period
    re.compile(rf"\b(?:{ORDINALS})[ _-]+sessions?\b", re.I),   # ... by its ordinal
    re.compile(r"\bissues?[ _-]*#?\d+", re.I),                 # a tracker issue by number
]
IN_PATHS = [re.compile(r"(?:session|issue)[ _-]*\d", re.I)]
DOCS_ONLY = [re.compile(r"\bsessions?\b", re.I)]               # README.md and docs/


def offending_lines(path: str, text: str) -> list[str]:
    """'path:line: text' for every line of `text` (the file at `path`) that refers to the
    project's own history."""
    is_doc = path == "README.md" or path.startswith("docs/")
    patterns = EVERYWHERE + (DOCS_ONLY if is_doc else [])
    return [f"{path}:{i}: {line.strip()[:160]}"
            for i, line in enumerate(text.splitlines(), 1)
            if any(p.search(line) for p in patterns)]


def offending_path(path: str) -> bool:
    return any(p.search(path) for p in IN_PATHS)


def project_files() -> list[str]:
    try:
        out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                             cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return sorted({p for p in out.splitlines() if p})


def read_text(path: Path) -> str | None:
    """The file's text, or None for a binary file (or one that is gone)."""
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    if b"\0" in raw[:8192]:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def test_the_guard_catches_history_references():
    i, s = "issue", "session"          # spelled apart, so that this file passes its own scan
    bad = [f"({i} 9)", f"{i.title()} #12", f"{i}-10's data", f"{i}s 9-10", f"{s} 19",
           f"{s}s 18-20", f"the {s}-16 run", f"the seventh {s}", f"ninth and tenth {s}s"]
    for text in bad:
        assert offending_lines("reda_jax/x.py", text), text
    assert offending_lines("docs/results.md", f"as this {s} showed")
    assert offending_path(f"docs/tables_hopper_{s}20/tables.md")
    assert offending_path(f"docs/tables_{i}9.md")
    good = ["pytest's scope='session' fixture", "https://github.com/openai/gym/issues/1541",
            "measured on 2026-12-04 (commit 9cc6d81)", "the issue with narrow data"]
    for text in good:
        assert not offending_lines("reda_jax/x.py", text), text
    assert not offending_path("docs/runs/hopper-gravity1-mini-tables/tables.md")


def test_no_file_refers_to_the_projects_development_history():
    files = project_files()
    problems = [f"{p}: file or folder name" for p in files if offending_path(p)]
    for p in files:
        text = read_text(ROOT / p)
        if text is not None:
            problems += offending_lines(p, text)
    assert not problems, ("references to the project's own development history (numbered "
                          "work periods, tracker issue numbers); name the experiment by what "
                          "it measured, its date or commit:\n" + "\n".join(problems))
