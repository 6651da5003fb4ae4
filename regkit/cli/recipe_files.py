"""Recipe files (``--config``), checked for being what they claim before anything runs.

Recipes are YAML read with jsonargparse's safe loader, plus two rules: a key given twice in the same
mapping is an error (plain YAML keeps the last one silently), and aliases (``*name``) may not expand
a recipe past :data:`MAX_VALUES` values (a "billion laughs" file of a few lines expands to 10**9, and
everything that walks the recipe would hang). A ``--config`` that is missing, a directory, binary,
not UTF-8, not YAML, empty or not a mapping is named with what is wrong.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from regkit.cli.commands import option_values
from regkit.errors import BadInput

YAML_MODE = "regkit_yaml"


# ---------------------------------------------------------------------------------------------
# YAML


# A recipe holds a few hundred values; anchors and aliases that expand it past this are an attack.
MAX_VALUES = 100_000


class AliasBomb(Exception):
    """Aliases that expand a YAML document past :data:`MAX_VALUES` values, or into itself."""


def _expanded_size(node: Any, sizes: dict[int, int]) -> int:
    """How many nodes ``node`` becomes once every alias is expanded, counted without expanding one:
    a node an alias shares is counted once and its size reused (``sizes``: by node id, -1 while open)."""
    import yaml

    known = sizes.get(id(node))
    if known == -1:
        raise AliasBomb("an alias refers to a node that contains it (a recursive document)")
    if known is not None:
        return known
    sizes[id(node)] = -1
    children: list[Any] = []
    if isinstance(node, yaml.MappingNode):
        children = [part for pair in node.value for part in pair]
    elif isinstance(node, yaml.SequenceNode):
        children = list(node.value)
    size = 1
    for child in children:
        size += _expanded_size(child, sizes)
        if size > MAX_VALUES:
            raise AliasBomb(f"its aliases (*name) expand it to more than {MAX_VALUES:,} values (a recipe holds "
                            "a few hundred): an alias bomb, not a recipe")
    sizes[id(node)] = size
    return size


def _duplicate_keys(node: Any, path: str = "", seen_nodes: set[int] | None = None) -> Iterator[tuple[str, int]]:
    """``(key, line)`` of each key given twice in one mapping; a node several aliases share is walked
    once (its duplicate named under its first path)."""
    import yaml

    seen_nodes = set() if seen_nodes is None else seen_nodes
    if id(node) in seen_nodes:
        return
    seen_nodes.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            name = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            key = f"{path}.{name}" if path else str(name)
            if name is not None and name in seen:
                yield key, key_node.start_mark.line + 1
            seen.add(name)
            yield from _duplicate_keys(value_node, key, seen_nodes)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            yield from _duplicate_keys(item, f"{path}.{i}" if path else str(i), seen_nodes)


def load_yaml(text: str) -> Any:
    """jsonargparse's YAML loader (safe), refusing a key given twice in one mapping and aliases that
    expand the document past :data:`MAX_VALUES` values."""
    import yaml
    from jsonargparse import get_loader

    if isinstance(text, str) and ":" in text:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is not None:
            try:
                _expanded_size(node, {})
            except AliasBomb as err:
                raise yaml.YAMLError(str(err)) from None
        for key, line in _duplicate_keys(node):
            raise yaml.YAMLError(f"duplicate key {key} (line {line}): each key may appear only once")
    return get_loader("yaml")(text)


def install_yaml_loader() -> str:
    """Register :func:`load_yaml` as the parser mode ``regkit_yaml``; returns the mode's name."""
    import yaml
    from jsonargparse import set_loader

    set_loader(YAML_MODE, load_yaml, exceptions=(yaml.YAMLError,))
    return YAML_MODE


def check_recipe_files(argv: list[str]) -> None:
    """Each ``--config FILE`` exists and is UTF-8 text holding a YAML mapping (not nothing: an empty
    file or only comments); the error names the file."""
    import yaml

    for path in option_values(argv, "--config"):
        if path.lstrip().startswith(("{", "[")) or "\n" in path:
            continue  # an inline recipe, which jsonargparse checks
        file = Path(path)
        if not file.is_file():
            from regkit.cli.shipped_recipes import close_matches

            what = "is a directory, not a recipe file" if file.is_dir() else "no such file" + close_matches(path)
            raise BadInput(what, f"--config {path}")
        try:
            text = file.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise BadInput("is not a YAML recipe (not UTF-8 text)", f"--config {path}") from None
        if "\x00" in text:
            raise BadInput("is not a YAML recipe (binary data)", f"--config {path}")
        try:
            value = load_yaml(text)
        except yaml.YAMLError as err:
            raise BadInput(f"is not valid YAML: {' '.join(str(err).split())}", f"--config {path}") from None
        if value is None:  # jsonargparse would say only "Unexpected config:", naming no file
            raise BadInput("is empty: a recipe is a YAML mapping of keys (trainer:, model:, data:)",
                           f"--config {path}")
        if not isinstance(value, dict):
            raise BadInput(
                f"is not a recipe: it holds a YAML {type(value).__name__}, not a mapping of keys "
                "(trainer:, model:, data:)",
                f"--config {path}",
            )
