"""Only the package list, which pyproject.toml cannot express: the top-level ``recipes/`` folder
(the repository's layout) ships inside the wheel as ``regkit/recipes/`` so that an installed regkit
has its recipes (``regkit recipes``; regkit/cli/shipped_recipes.py finds them in either place)."""
from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["regkit*"]), "regkit.recipes"],
    package_dir={"regkit.recipes": "recipes"},
)
