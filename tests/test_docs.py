"""The docs run: every ```python block of every page under docs/ is executed, page by page.

A page's blocks run in order in one namespace, as a reader would paste them into one Python
session. Where a python block is directly followed by a ```text (or ```output) block, that
block is what the python block printed: the test compares it with the captured stdout
(trailing spaces and trailing blank lines ignored). Pages write any files into a temporary
directory.
"""
from __future__ import annotations

import contextlib
import io
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

import tinynet

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
TUTORIAL = [f"{i:02d}-" for i in range(1, 12)]  # page name prefixes the tutorial must have
OUTPUT_LANGS = ("text", "output")
FENCE = re.compile(r"^```\s*([\w+-]*)\s*$")


@dataclass
class Block:
    lang: str
    code: str
    line: int                   # 1-based line of the opening fence
    expected: str | None = None  # for python blocks: the output block that follows, if any


def parse_blocks(markdown: str) -> list[Block]:
    """The fenced blocks of a page, in order; each python block carries the text of an output
    block that follows it with nothing but blank lines in between."""
    blocks, gaps = [], []
    current, gap = None, []
    for number, line in enumerate(markdown.splitlines(), start=1):
        match = FENCE.match(line)
        if current is None:
            if match:
                current = Block(match.group(1).lower(), "", number)
                body = []
                gaps.append("".join(gap).strip())
                gap = []
            else:
                gap.append(line)
        elif line.rstrip() == "```":
            current.code = "\n".join(body) + "\n"
            blocks.append(current)
            current = None
        else:
            body.append(line)
    if current is not None:
        raise ValueError(f"unclosed ``` block opened at line {current.line}")
    for before, after, gap_text in zip(blocks, blocks[1:], gaps[1:]):
        if before.lang == "python" and after.lang in OUTPUT_LANGS and not gap_text:
            before.expected = after.code
    return blocks


def normalise(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.splitlines()).strip("\n")


def run_blocks(blocks: list[Block], where: str) -> None:
    """Run the python blocks in one namespace; raise AssertionError naming the block whose
    printed output differs from the page."""
    namespace = {"__name__": "__docs__"}
    for block in blocks:
        if block.lang != "python":
            continue
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout):
            exec(compile(block.code, f"{where}:{block.line}", "exec"), namespace)
        if block.expected is not None:
            got, want = normalise(stdout.getvalue()), normalise(block.expected)
            if got != want:
                raise AssertionError(f"{where}: the python block at line {block.line} printed\n{got}\n"
                                     f"but the page shows\n{want}")


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(DOCS)) for p in PAGES])
def test_page_runs_and_prints_what_it_shows(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tinynet.manual_seed(0)
    run_blocks(parse_blocks(page.read_text()), str(page.relative_to(DOCS.parent)))


def test_tutorial_pages_exist_and_show_their_output():
    tutorial = sorted((DOCS / "tutorial").glob("[0-9]*.md"))
    assert [p.name[:3] for p in tutorial] == TUTORIAL
    assert (DOCS / "tutorial" / "README.md").exists()
    for page in tutorial:
        blocks = parse_blocks(page.read_text())
        shown = [b for b in blocks if b.lang == "python" and b.expected is not None]
        assert shown, f"{page.name} shows no printed output"


LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(DOCS)) for p in PAGES])
def test_relative_links_point_at_files(page):
    prose = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)  # code is not links
    for target in LINK.findall(prose):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = (page.parent / target.split("#")[0]).resolve()
        assert path.exists(), f"{page.name}: link {target} points at nothing"


# ------------------------------------------------------------------- the checker checks
SAMPLE = """Text.

```python
print(1 + 1)
```

```text
2
```

Prose in between, so the next output block belongs to no python block.

```python
x = 3
```

More prose.

```text
not an output
```

```python
print(x)<sp>
```
```output
3<sp>
```
""".replace("<sp>", "   ")  # trailing spaces are ignored


def test_parse_pairs_python_blocks_with_the_output_right_after():
    blocks = parse_blocks(SAMPLE)
    assert [b.lang for b in blocks] == ["python", "text", "python", "text", "python", "output"]
    assert [b.expected for b in blocks if b.lang == "python"] == ["2\n", None, "3   \n"]
    assert blocks[2].line == 13
    run_blocks(blocks, "sample")


def test_wrong_output_fails():
    blocks = parse_blocks(SAMPLE.replace("```text\n2\n", "```text\n4\n"))
    with pytest.raises(AssertionError, match="line 3 printed\n2\nbut the page shows\n4"):
        run_blocks(blocks, "sample")


def test_errors_in_a_block_fail():
    with pytest.raises(NameError):
        run_blocks(parse_blocks("```python\nprint(undefined)\n```\n"), "sample")


def test_unclosed_block_is_an_error():
    with pytest.raises(ValueError, match="unclosed"):
        parse_blocks("```python\nprint(1)\n")
