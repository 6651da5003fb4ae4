"""Recipes that installed plugin packages ship: ``regkit recipes`` lists them with their plugin's
name, and ``--config NAME`` / ``regkit recipes copy NAME`` find them as they find regkit's own.

A plugin ships recipes by convention, nothing to declare beyond its ``regkit.plugins`` entry points:
YAML files in ``recipes/`` inside the package its entry points name (package data, so a wheel
carries them), or, in a source checkout or editable install, in ``recipes/`` beside that package's
folder (next to the plugin's ``pyproject.toml``). Nothing is imported to find them.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path


def recipes_folder(package: Path) -> Path | None:
    """``<package>/recipes/``, else ``recipes/`` beside the package in a source checkout, if it holds YAML."""
    candidates = [package / "recipes"]
    if (package.parent / "pyproject.toml").is_file():  # not site-packages/recipes/ of someone else
        candidates.append(package.parent / "recipes")
    return next((folder for folder in candidates if folder.is_dir() and any(folder.glob("*.yaml"))), None)


def plugin_recipe_folders() -> dict[str, Path]:
    """Each installed plugin distribution that ships recipes -> its recipes folder."""
    from regkit.registry.plugins import dist_name, installed

    found: dict[str, Path] = {}
    for ep in installed.entry_points():
        top = ep.value.split(":")[0].split(".")[0]
        try:
            spec = importlib.util.find_spec(top)  # a top-level name: found, not imported
        except (ImportError, ValueError):
            continue
        for location in (spec.submodule_search_locations or []) if spec is not None else []:
            folder = recipes_folder(Path(location))
            if folder is not None:
                found.setdefault(dist_name(ep), folder)
    return found
