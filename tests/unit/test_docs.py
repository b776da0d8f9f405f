"""docs/ names the code it walks through as `path.py:function` (or `path.py:Class.method`): every
such name must exist, so the walk of a boot cannot drift from the code unnoticed."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = re.compile(r"`([\w/]+\.py):([\w.]+)`")


def defined_names(path: Path) -> set[str]:
    """Top-level functions and classes, and Class.method for the methods of top-level classes."""
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        if isinstance(node, ast.ClassDef):
            names.update(f"{node.name}.{item.name}" for item in node.body
                         if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef))
    return names


def references() -> list[tuple[str, str, str]]:
    return [(doc.name, path, name) for doc in sorted((ROOT / "docs").glob("*.md"))
            for path, name in REFERENCE.findall(doc.read_text())]


def test_the_docs_name_code() -> None:
    """The boot walk is written with references (a page that names none would pass vacuously)."""
    assert len([r for r in references() if r[0] == "boot.md"]) >= 20


@pytest.mark.parametrize(("doc", "path", "name"), references())
def test_every_reference_exists(doc: str, path: str, name: str) -> None:
    source = ROOT / path
    assert source.is_file(), f"{doc} names {path}, which does not exist"
    assert name in defined_names(source), f"{doc} names {path}:{name}, which {path} does not define"
