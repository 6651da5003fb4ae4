"""Recipe files (``--config``), checked for being what they claim before anything runs.

Recipes are YAML read with jsonargparse's safe loader, plus one rule: a key given twice in the same
mapping is an error (plain YAML keeps the last one silently). A ``--config`` that is missing, a
directory, binary, not UTF-8, not YAML or not a mapping is named with what is wrong.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from regkit.cli.commands import option_values
from regkit.errors import BadInput

YAML_MODE = "regkit_yaml"


# ---------------------------------------------------------------------------------------------
# YAML


def _duplicate_keys(node: Any, path: str = "") -> Iterator[tuple[str, int]]:
    import yaml

    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            name = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            key = f"{path}.{name}" if path else str(name)
            if name is not None and name in seen:
                yield key, key_node.start_mark.line + 1
            seen.add(name)
            yield from _duplicate_keys(value_node, key)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            yield from _duplicate_keys(item, f"{path}.{i}" if path else str(i))


def load_yaml(text: str) -> Any:
    """jsonargparse's YAML loader (safe), refusing a key given twice in one mapping."""
    import yaml
    from jsonargparse import get_loader

    if isinstance(text, str) and ":" in text:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
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
    """Each ``--config FILE`` exists and is UTF-8 text holding a YAML mapping; the error names the file."""
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
        if value is not None and not isinstance(value, dict):
            raise BadInput(
                f"is not a recipe: it holds a YAML {type(value).__name__}, not a mapping of keys "
                "(trainer:, model:, data:)",
                f"--config {path}",
            )
