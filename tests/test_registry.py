"""Plugin discovery through the ``regkit.plugins`` entry-point group, with real installed metadata.

Each test builds small distributions (a ``*.dist-info`` folder with ``entry_points.txt`` next to
their modules) in a temporary site directory and runs a fresh interpreter with it on the path, as
``pip install`` would leave them.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PLUGINS = {
    # dist name: (modules, entry points)
    "good-plugin": (
        {
            "good_plugin": """
                import torch
                import regkit
                from regkit import Penalty

                @regkit.register("penalty", "good_penalty")
                class GoodPenalty(Penalty):
                    '''Sum of squared parameters (test plugin).'''
                    def __init__(self, strength: float = 1.0) -> None:
                        super().__init__(strength)
                    def forward(self, module, **context):
                        return self.strength * sum(p.pow(2).sum() for p in module.parameters())
            """,
        },
        {"penalty.good_penalty": "good_plugin:GoodPenalty"},
    ),
    "other-plugin": (
        {
            # registers nothing itself: the entry point's KIND.NAME does it
            "other_plugin": """
                import torch
                class LazyNoise(torch.nn.Module):
                    '''Adds noise (test plugin).'''
                    def __init__(self, sigma: float = 0.1) -> None:
                        super().__init__()
                        self.sigma = sigma
                    def forward(self, x):
                        return x + self.sigma * torch.randn_like(x) if self.training else x
            """,
        },
        {"regularizer.lazy_noise": "other_plugin:LazyNoise"},
    ),
    "broken-plugin": (
        {"broken_plugin": "raise ImportError('needs libfoo, which is not installed')\n"},
        {"regularizer.broken_thing": "broken_plugin:Thing"},
    ),
    "legacy-plugin": (
        {
            # an entry point not named KIND.NAME: a function that registers components
            "legacy_plugin": """
                import regkit
                from regkit import Constraint

                def setup():
                    @regkit.register("constraint", "legacy_clip")
                    class LegacyClip(Constraint):
                        '''Clamp weights to [-1, 1] (test plugin).'''
                        def __init__(self) -> None:
                            super().__init__()
                        def apply(self, module):
                            for p in module.parameters():
                                p.clamp_(-1, 1)
            """,
        },
        {"legacy": "legacy_plugin:setup"},
    ),
}


def install_fake_distributions(site: Path) -> None:
    for dist, (modules, entry_points) in PLUGINS.items():
        info = site / f"{dist.replace('-', '_')}-1.2.3.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
        lines = "".join(f"{name} = {value}\n" for name, value in entry_points.items())
        (info / "entry_points.txt").write_text("[regkit.plugins]\n" + lines)
        for module, code in modules.items():
            (site / f"{module}.py").write_text(textwrap.dedent(code))


SCRIPT = r"""
import contextlib, io, json, sys, warnings
warnings.simplefilter("ignore")
import regkit, regkit.cli
from regkit import registry

mods = lambda: sorted(m for m in ("good_plugin", "other_plugin", "broken_plugin") if m in sys.modules)
out = {"at_start": mods()}
out["available_regularizers"] = regkit.available("regularizer")
out["available_penalties"] = regkit.available("penalty")
out["after_available"] = mods()
penalty = regkit.build("penalty", "good_penalty", strength=0.5)
out["built"] = type(penalty).__name__
out["after_build"] = mods()
entry = registry.get("penalty", "good_penalty")
out["origin"], out["version"] = entry.origin, entry.version
try:
    regkit.build("regularizer", "broken_thing")
except registry.RegistryError as err:
    out["broken_error"] = str(err)
out["builtin"] = type(regkit.build("regularizer", "dropout", p=0.1)).__name__
out["undecorated"] = type(regkit.build("regularizer", "lazy_noise", sigma=0.2)).__name__
out["undecorated_origin"] = registry.get("regularizer", "lazy_noise").origin
out["legacy"] = type(regkit.build("constraint", "legacy_clip")).__name__
out["legacy_origin"] = registry.get("constraint", "legacy_clip").origin
try:
    regkit.build("regularizer", "lazy_nosie")
except registry.RegistryError as err:
    out["typo_error"] = str(err)
stdout, stderr = io.StringIO(), io.StringIO()
with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
    out["list_rc"] = regkit.cli.main(["list"])
out["list_out"], out["list_err"] = stdout.getvalue(), stderr.getvalue()
out["plugin_errors"] = registry.plugin_errors
print("RESULT " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def discovery(tmp_path_factory: pytest.TempPathFactory) -> dict:
    site = tmp_path_factory.mktemp("site")
    install_fake_distributions(site)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def test_named_entry_points_are_known_without_importing_any_plugin(discovery: dict) -> None:
    assert discovery["at_start"] == []
    assert "lazy_noise" in discovery["available_regularizers"]
    assert "broken_thing" in discovery["available_regularizers"]
    assert "good_penalty" in discovery["available_penalties"]
    assert discovery["after_available"] == []


def test_building_a_component_imports_only_its_own_plugin(discovery: dict) -> None:
    assert discovery["built"] == "GoodPenalty"
    assert discovery["after_build"] == ["good_plugin"]
    assert (discovery["origin"], discovery["version"]) == ("good-plugin", "1.2.3")


def test_entry_point_object_is_registered_under_its_name(discovery: dict) -> None:
    assert discovery["undecorated"] == "LazyNoise"
    assert discovery["undecorated_origin"] == "other-plugin"


def test_non_named_entry_point_function_registers_components(discovery: dict) -> None:
    assert discovery["legacy"] == "LegacyClip"
    assert discovery["legacy_origin"] == "legacy-plugin"


def test_broken_plugin_is_named_with_its_error_and_the_rest_works(discovery: dict) -> None:
    err = discovery["broken_error"]
    assert "broken-plugin" in err and "needs libfoo" in err and "broken_thing" in err
    assert discovery["builtin"] == "Dropout"
    assert "regularizer.broken_thing" in discovery["plugin_errors"]
    assert discovery["list_rc"] == 0
    assert "plugin 'regularizer.broken_thing' failed to load" in discovery["list_err"]
    assert "needs libfoo" in discovery["list_err"]


def test_typo_in_plugin_name_suggests_it(discovery: dict) -> None:
    assert "did you mean 'lazy_noise'" in discovery["typo_error"]


def test_list_shows_the_package_of_every_component(discovery: dict) -> None:
    rows = discovery["list_out"].splitlines()

    def origin_of(name: str) -> str:
        i = next(i for i, r in enumerate(rows) if r.split() and r.split()[0] == name)
        return next(r for r in rows[i + 1 : i + 4] if "from:" in r).split("from:")[1].strip()

    assert origin_of("good_penalty") == "good-plugin 1.2.3"
    assert origin_of("lazy_noise") == "other-plugin 1.2.3"
    assert origin_of("legacy_clip") == "legacy-plugin 1.2.3"
    assert origin_of("dropout").startswith("regkit ")
