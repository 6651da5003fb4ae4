"""The recipes that ship with regkit: ``regkit recipes`` lists them, ``regkit recipes copy NAME
[DEST]`` copies one for editing, and ``--config NAME`` names one when no file ``NAME`` exists.

They live in the repository's top-level ``recipes/`` folder; the wheel carries them as
``regkit/recipes/`` (setup.py maps the package ``regkit.recipes`` to that folder). The folder is
found by path, so a wheel, an editable install and a source checkout on ``PYTHONPATH`` all see it.
Installed plugins' recipes follow, listed with their plugin's name (regkit/cli/plugin_recipes.py);
a name regkit ships itself wins.

Everything listed comes from the recipe itself: its header lines ``# trains: S4: what it trains``
(``Sx:`` names the seed article), ``# cpu: about 100 s (docs/claims.md)`` (the wall time measured
on the documented machine) and ``# requires: timm`` (the optional packages it needs), and its
budget (``trainer.max_epochs``, ``data.init_args.limit_train`` / ``limit_train_tokens``).
"""
from __future__ import annotations

import difflib
import json
import re
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from regkit.errors import BadInput

USAGE = "usage: regkit recipes [--json] | regkit recipes copy NAME [DEST]"


def recipes_dir() -> Optional[Path]:
    """``regkit/recipes/`` of an installed wheel, else ``recipes/`` beside the source package."""
    package = Path(__file__).resolve().parents[1]  # regkit/
    for folder in (package / "recipes", package.parent / "recipes"):
        if folder.is_dir() and any(folder.glob("*.yaml")):
            return folder
    return None


@dataclass
class Recipe:
    """One shipped recipe, as ``regkit recipes`` lists it."""

    name: str
    path: str
    seed: str  # "S4": the seed article it reproduces ("" if none)
    trains: str  # its ``# trains:`` header line
    cpu: str  # its ``# cpu:`` header line (time on the 2-core machine of the docs), else its budget
    requires: list[str]  # optional packages (``# requires: timm``)
    plugin: str = ""  # the plugin distribution that ships it ("" for regkit's own)


def _header(text: str) -> dict[str, str]:
    """The ``# key: value`` lines of the header comment (``requires``, ``trains``, ``cpu``), and
    its first line as ``first``."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        found.setdefault("first", line.lstrip("# ").strip())
        match = re.fullmatch(r"#\s*(requires|trains|cpu):\s*(.*?)\s*", line)
        if match:
            found.setdefault(match.group(1), match.group(2))
    return found


def _budget(text: str) -> str:
    """What the defaults train: ``6 epochs x 25600 examples``."""
    import yaml

    try:
        recipe = yaml.safe_load(text) or {}
    except yaml.YAMLError:
        return "?"
    epochs = (recipe.get("trainer") or {}).get("max_epochs")
    data = ((recipe.get("data") or {}).get("init_args")) or {}
    parts = [f"{epochs} epochs" if epochs is not None else "Lightning's default epochs"]
    for key, unit in (("limit_train", "examples"), ("limit_train_tokens", "tokens")):
        if data.get(key):
            parts.append(f"on {data[key]} {unit}")
    return " ".join(parts)


def describe(path: Path, plugin: str = "") -> Recipe:
    """What the header lines of the recipe at ``path`` say (without ``# trains:``, its first line)."""
    text = path.read_text(encoding="utf-8")
    header = _header(text)
    trains = header.get("trains", header.get("first", ""))
    seed = re.match(r"(S\d):", trains)
    cpu = header.get("cpu", "")
    budget = _budget(text)
    return Recipe(
        name=path.stem,
        path=str(path),
        seed=seed.group(1) if seed else "",
        trains=trains[seed.end():].strip() if seed else trains,
        cpu=f"{budget}, {cpu}" if cpu else budget,
        requires=[p for p in re.split(r"[,\s]+", header.get("requires", "")) if p],
        plugin=plugin,
    )


def recipe_folders() -> list[tuple[str, Path]]:
    """(plugin, folder) of regkit's recipes (plugin ``""``), then of each installed plugin's."""
    from regkit.cli.plugin_recipes import plugin_recipe_folders

    folder = recipes_dir()
    own = [("", folder)] if folder is not None else []
    return own + sorted(plugin_recipe_folders().items())


def shipped() -> list[Recipe]:
    """Every shipped recipe, by name: regkit's, then the installed plugins'."""
    return [describe(p, plugin) for plugin, folder in recipe_folders() for p in sorted(folder.glob("*.yaml"))]


def find(name: str) -> Optional[Path]:
    """The shipped recipe called ``name`` (``gan`` or ``gan.yaml``), regkit's or a plugin's, or None."""
    if "/" in name or "\\" in name:
        return None
    for _, folder in recipe_folders():
        path = folder / (name if name.endswith((".yaml", ".yml")) else name + ".yaml")
        if path.is_file():
            return path
    return None


def close_matches(name: str) -> str:
    """``"; shipped recipes like it: gan, gan_fashion"`` (empty if none is close)."""
    names = [r.stem for _, folder in recipe_folders() for r in sorted(folder.glob("*.yaml"))]
    close = difflib.get_close_matches(Path(name).stem, names, n=3, cutoff=0.5)
    return f"; shipped recipes like it: {', '.join(close)} (regkit recipes lists them)" if close else ""


def resolve_names(argv: list[str]) -> list[str]:
    """``argv`` with each ``--config NAME`` that is not a file but a shipped recipe's name replaced
    by that recipe's path (a file of that name in the current directory wins)."""
    resolved = []
    for i, arg in enumerate(argv):
        value = None
        if i > 0 and argv[i - 1] == "--config":
            value, prefix = arg, ""
        elif arg.startswith("--config="):
            value, prefix = arg.split("=", 1)[1], "--config="
        if value is not None and not Path(value).exists() and find(value) is not None:
            arg = prefix + str(find(value))
        resolved.append(arg)
    return resolved


def table(recipes: list[Recipe]) -> str:
    rows = [("name", "from", "seed", "trains", "CPU budget, time (2-core AMD EPYC)", "requires")]
    rows += [(r.name, r.plugin or "regkit", r.seed or "-", r.trains, r.cpu, ", ".join(r.requires) or "-")
             for r in recipes]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row[:5], widths)) + "  " + row[5]
                     for row in rows).rstrip()


def copy(name: str, dest: Optional[str]) -> Path:
    """Copy the shipped recipe ``name`` to ``dest`` (a file, or a folder; default: ``./NAME.yaml``).
    An existing file is never overwritten."""
    source = find(name)
    if source is None:
        raise BadInput(f"no shipped recipe {name!r}{close_matches(name)}", "regkit recipes copy")
    target = Path(dest) if dest else Path(source.name)
    if target.is_dir():
        target = target / source.name
    if target.exists():
        raise BadInput(f"{target} exists; give another DEST or remove it first", "regkit recipes copy")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target


def recipes_command(argv: list[str]) -> int:
    """``regkit recipes [--json]`` and ``regkit recipes copy NAME [DEST]``."""
    if any(a in ("-h", "--help") for a in argv):
        print(USAGE + "\n\nShipped recipes; `regkit fit --config NAME` trains one by name from any directory.")
        return 0
    rest = [a for a in argv if a != "--json"]
    as_json = "--json" in argv
    if rest and rest[0] == "copy":
        if len(rest) not in (2, 3):
            raise BadInput(f"takes NAME [DEST], got {' '.join(rest[1:]) or 'nothing'}", "regkit recipes copy")
        target = copy(rest[1], rest[2] if len(rest) == 3 else None)
        print(f"copied {rest[1]} to {target}; train it with: regkit fit --config {target}")
        return 0
    if rest:
        raise BadInput(f"unknown argument {rest[0]!r}; {USAGE}", "regkit recipes")
    recipes = shipped()
    if as_json:
        print(json.dumps([asdict(r) for r in recipes], indent=2))
    elif recipes:
        print(table(recipes))
        print("\nregkit fit --config NAME trains one; regkit recipes copy NAME [DEST] copies it for editing.")
    else:
        print("no shipped recipes found (a regkit install without its recipes/ folder)", file=sys.stderr)
    return 0
