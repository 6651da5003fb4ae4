"""What the documentation names exists: every repository path (``regkit/...``, ``tests/...``,
``recipes/...``, ...), every ``regkit.x.y`` module or attribute, and every relative markdown link
(with its ``#anchor``) in README.md, CONTRIBUTING.md and docs/*.md. A restructuring that moves a
module, or a page that drops a heading others link to, fails here naming the page and the name."""
from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

from conftest import ROOT

PAGES = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]

# Pages another piece of work is writing now: a link to one is accepted while it does not exist
# (once it does, its anchors are checked like any other). Empty this once they have landed.
PENDING: set[str] = set()  # pages linked before they exist (none now)

# Dotted names that are not Python modules.
NOT_MODULES = {"regkit.plugins"}  # the entry-point group of plugin packages

TOP = r"(?:regkit|tests|benchmarks|recipes|examples|plugins|docs|\.ci)"
PATH = re.compile(rf"(?<![\w./$-]){TOP}/[\w./*-]*")
MODULE = re.compile(r"(?<![\w./-])regkit(?:\.[A-Za-z_]\w*)+")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
HTML_ANCHOR = re.compile(r"<a\s+(?:id|name)=\"([^\"]+)\"")


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lower case, punctuation removed, spaces -> '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "").lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(text: str) -> frozenset[str]:
    """The #anchors a page offers: one per heading (GitHub numbers repeats -1, -2, ...), and <a id>."""
    found: set[str] = set(HTML_ANCHOR.findall(text))
    seen: dict[str, int] = {}
    for line in prose_lines(text):
        match = HEADING.match(line)
        if match:
            base = slug(match.group(2))
            n = seen.get(base, 0)
            seen[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
    return frozenset(found)


@cache
def module_names() -> dict[str, Path]:
    names = {}
    for path in (ROOT / "regkit").rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


@cache
def top_level_names(path: Path) -> frozenset[str]:
    """What ``module.NAME`` can name: the module's definitions, assignments and imports."""
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return frozenset(names)


def module_exists(dotted: str) -> bool:
    """``regkit.a.b`` is a module, or a module followed by a name it defines (``regkit.build``,
    ``regkit.tasks.Classifier.load_from_checkpoint``: the first name after the module is checked)."""
    modules = module_names()
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        if prefix in modules:
            return end == len(parts) or parts[end] in top_level_names(modules[prefix]) or \
                f"{prefix}.{parts[end]}" in modules
    return False


def path_exists(path: str) -> bool:
    path = path.rstrip(".")
    return any(ROOT.glob(path)) if "*" in path else (ROOT / path).exists()


def broken_references(text: str, page: Path) -> list[str]:
    """Every path, module and relative link in ``text`` (the content of ``page``) that does not resolve."""
    problems = []
    for path in sorted(set(PATH.findall(text))):
        if not path_exists(path) and path.rstrip(".") not in PENDING:
            problems.append(f"path {path}")
    for name in sorted(set(MODULE.findall(text))):
        if name not in NOT_MODULES and not module_exists(name):
            problems.append(f"module {name}")
    prose = re.sub(r"`[^`]*`", "", "\n".join(prose_lines(text)))
    for target in sorted(set(LINK.findall(prose))):
        if re.match(r"[a-z]+:", target):
            continue  # http:, https:, mailto:
        file, _, anchor = target.partition("#")
        if not file:
            if anchor not in anchors(text):
                problems.append(f"link {target} (no such heading here)")
            continue
        dest = (page.parent / file).resolve()
        where = dest.relative_to(ROOT).as_posix() if dest.is_relative_to(ROOT) else str(dest)
        if not dest.exists():
            if where not in PENDING:
                problems.append(f"link {target}")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest.read_text()):
            problems.append(f"link {target} (no heading '#{anchor}' in {where})")
    return problems


def test_every_page_exists_and_every_reference_in_it_resolves():
    assert all(page.exists() for page in PAGES[:2]), "README.md and CONTRIBUTING.md"
    problems = [f"{page.relative_to(ROOT)}: {p}" for page in PAGES for p in broken_references(page.read_text(), page)]
    assert not problems, "stale references in the docs:\n" + "\n".join(problems)


def test_the_check_sees_a_made_up_path_module_link_and_anchor():
    page = ROOT / "docs" / "made_up.md"
    text = ("See `regkit/cli/no_such_file.py`, `regkit.cli.no_such_module`, `regkit.build_everything`,\n"
            "[a page](no_such_page.md), [a heading](plugins.md#no-such-heading) and `tests/test_nothing.py`.\n"
            "But `regkit/cli/run_folder.py`, `regkit.cli.run_folder`, `regkit.build`, [ok](plugins.md#lazy-loading),\n"
            "[ok](../README.md#quick-start) and [ok](#a-heading) resolve.\n\n## A heading\n")
    assert broken_references(text, page) == [
        "path regkit/cli/no_such_file.py",
        "path tests/test_nothing.py",
        "module regkit.build_everything",
        "module regkit.cli.no_such_module",
        "link no_such_page.md",
        "link plugins.md#no-such-heading (no heading '#no-such-heading' in docs/plugins.md)",
    ]


def test_anchors_follow_githubs_rule():
    assert slug("GANs: `regkit fit --config recipes/gan.yaml`") == "gans-regkit-fit---config-recipesganyaml"
    assert slug("Layout: every slot tells the component what its axes mean") == \
        "layout-every-slot-tells-the-component-what-its-axes-mean"
    assert slug("S2: dropout in recurrent networks (LSTM language model)") == \
        "s2-dropout-in-recurrent-networks-lstm-language-model"
