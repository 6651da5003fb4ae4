"""The CI scripts name test files that exist: a renamed test file must not make CI's later stages
(.ci/lowest, .ci/timm) fail after the README's commands passed."""
from __future__ import annotations

import re

import pytest

from conftest import ROOT


@pytest.mark.parametrize("script", sorted(p.name for p in (ROOT / ".ci").iterdir() if p.is_file()))
def test_every_test_file_a_ci_script_names_exists(script: str) -> None:
    named = re.findall(r"\btests/[\w/]+\.py\b", (ROOT / ".ci" / script).read_text())
    missing = [path for path in named if not (ROOT / path).is_file()]
    assert not missing, f".ci/{script} names {missing}"
