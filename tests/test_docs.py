"""The repository stands alone: every relative link in its Markdown resolves, every
`docs/*.md` a file mentions exists, and nothing points at files outside the repo."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
DOC_MENTION = re.compile(r"(?<![\w/.-])((?:\.\./)*docs/[\w.-]+\.md)")
OUTSIDE = re.compile(r"\.\./shared|DESIGN\.md")


def tracked(pattern: str = "") -> list[Path]:
    """Files git knows (committed or new), as a clone would have them."""
    argv = ["git", "ls-files", "--cached", "--others", "--exclude-standard"]
    names = subprocess.run([*argv, *([pattern] if pattern else [])], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.splitlines()
    return [ROOT / n for n in names if (ROOT / n).is_file() and not (ROOT / n).is_symlink()]


def text_of(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return None


def markdown_files() -> list[Path]:
    # tests/golden_diff/ holds gen diff's own output, compared byte for byte: not docs
    return [p for p in tracked("*.md") if "golden_diff" not in p.parts]


@pytest.mark.parametrize("doc", markdown_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(doc: Path) -> None:
    broken = []
    for target in LINK.findall(doc.read_text(encoding="utf-8")):
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # a URL or an anchor in the same page
        path = target.split("#", 1)[0]
        if not (doc.parent / path).exists():
            broken.append(target)
    assert broken == [], f"{doc.relative_to(ROOT)}: links that lead nowhere: {broken}"


def test_every_mentioned_doc_exists() -> None:
    """`docs/labs.md` in a comment or a message must be a file of this repo."""
    missing = []
    for path in tracked():
        text = text_of(path)
        for mention in DOC_MENTION.findall(text or ""):
            here, top = path.parent / mention, ROOT / mention.lstrip("./")
            if not here.exists() and not top.exists():
                missing.append(f"{path.relative_to(ROOT)}: {mention}")
    assert missing == []


def test_nothing_refers_outside_the_repository() -> None:
    this = Path(__file__).resolve()
    found = [f"{p.relative_to(ROOT)}:{n}" for p in tracked() if p != this
             for n, line in enumerate((text_of(p) or "").splitlines(), 1)
             if OUTSIDE.search(line)]
    assert found == []
