"""``regkit list [KIND] [PATTERN] [--json]`` (regkit/cli/main.py, regkit/registry/listing.py): every
component with its arguments, defaults and one-line doc, filtered by kind and pattern. Runs
``regkit`` in this process (conftest.regkit_main)."""
from __future__ import annotations

import json

from conftest import regkit_main


def test_list_json_shows_components_with_arguments_and_docs():
    result = regkit_main("list", "--json")
    assert result.returncode == 0, result.stderr
    rows = {(c["kind"], c["name"]): c for c in json.loads(result.stdout)["components"]}
    dropout = rows[("regularizer", "dropout")]
    assert [a["name"] for a in dropout["arguments"]][:1] == ["p"]
    assert "Srivastava" in dropout["doc"]
    assert dropout["origin"] == "regkit"
    assert ("constraint", "max_norm") in rows and ("network", "mlp") in rows
    # defaults are JSON values a script can use as they are; the type is text
    args = {(kind, name, a["name"]): a for (kind, name), c in rows.items() for a in c["arguments"]}
    assert args[("regularizer", "dropout", "p")] == {"name": "p", "type": "float", "required": False, "default": 0.5}
    assert args[("regularizer", "dropout", "inplace")]["default"] is False
    assert args[("network", "mlp", "hidden")]["default"] == [1024, 1024]
    assert args[("generator", "dcgan_generator", "norm")]["default"] == {"name": "batch_norm"}
    assert args[("attention", "squeeze_excitation", "num_features")] == {
        "name": "num_features", "type": "int", "required": True}
    assert all(isinstance(a["type"], str) for a in args.values())


def test_list_filters_by_kind_and_pattern():
    result = regkit_main("list", "network", "*cnn*")
    assert result.returncode == 0
    assert "small_cnn" in result.stdout and " mlp " not in result.stdout
    bad = regkit_main("list", "networks")
    assert bad.returncode == 2 and "did you mean 'network'" in bad.stderr
