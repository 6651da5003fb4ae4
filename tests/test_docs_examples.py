"""The examples in regkit's docstrings run (doctest), so they cannot drift from the code; none is
skipped."""
from __future__ import annotations

import doctest
import importlib
import importlib.util
import pkgutil

import pytest

import regkit

from conftest import ROOT

MODULES = [info.name for info in pkgutil.walk_packages(regkit.__path__, "regkit.")
           if not info.name.endswith("__main__")]
WITH_EXAMPLES = [name for name in MODULES if ">>>" in (importlib.util.find_spec(name).loader.get_source(name) or "")]


def test_examples_are_found():
    assert {"regkit.components.norm", "regkit.components.attention", "regkit.components.regularizers.dropout",
            "regkit.components.regularizers.recurrent"} <= set(WITH_EXAMPLES)


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.attempted > 0 and result.failed == 0, f"{name}: {result.failed} of {result.attempted} examples failed"


def test_no_example_is_skipped():
    skipped = [f"{path.relative_to(ROOT)}:{number}" for path in sorted((ROOT / "regkit").rglob("*.py"))
               for number, line in enumerate(path.read_text().splitlines(), 1) if "doctest: +SKIP" in line]
    assert skipped == []
