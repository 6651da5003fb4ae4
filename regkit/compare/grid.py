"""The grid of a comparison: ``--vary KEY=V1,V2`` values x seeds, one :class:`Run` each, with its
label, folder and ``regkit fit`` arguments."""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Run:
    """One (setting, seed): the overrides it adds to the shared command line, and where it runs."""

    setting: str
    values: dict[str, str]
    seed: int
    run_dir: Path
    result: dict[str, Any] = field(default_factory=dict)

    def fit_args(self, passthrough: list[str]) -> list[str]:
        """``passthrough`` with this run's ``--KEY VALUE`` overrides and seed after it; a varied
        ``config`` goes right after the base recipe instead, so later options still override it."""
        args = list(passthrough)
        if "config" in self.values:
            ends = [i + 2 for i, a in enumerate(args) if a == "--config"] + [
                i + 1 for i, a in enumerate(args) if a.startswith("--config=")]
            at = max(ends, default=0)
            args[at:at] = ["--config", self.values["config"]]
        for key, value in self.values.items():
            if key != "config":
                args += [f"--{key}", value]
        return args + ["--seed_everything", str(self.seed)]


def split_values(text: str) -> list[str]:
    """``a,b,[1,2],{p: 0.5, q: 1}`` -> ``['a', 'b', '[1,2]', '{p: 0.5, q: 1}']``: commas inside
    brackets, braces or quotes stay."""
    values, depth, quote, current = [], 0, "", ""
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[{(":
            depth += 1
        elif char in "]})":
            depth -= 1
        elif char == "," and depth == 0:
            values.append(current.strip())
            current = ""
            continue
        current += char
    values.append(current.strip())
    return [v for v in values if v]


def parse_vary(specs: list[str]) -> dict[str, list[str]]:
    """``['KEY=V1,V2', ...]`` -> ``{KEY: [V1, V2], ...}`` (KEY may start with ``--``)."""
    grid: dict[str, list[str]] = {}
    for spec in specs:
        key, sep, values = spec.partition("=")
        key = key.strip().lstrip("-")
        if not sep or not key or not split_values(values):
            raise SystemExit(f"regkit compare: --vary wants KEY=V1,V2,..., got {spec!r}")
        if key in grid:
            raise SystemExit(f"regkit compare: --vary {key} is given twice")
        grid[key] = split_values(values)
    return grid


def short_keys(keys: list[str]) -> dict[str, str]:
    """The shortest dotted suffix naming each key uniquely, at least two parts when the last is a
    generic word (``...dropout.name`` -> ``dropout.name``, ``...init_args.lr`` -> ``lr``)."""
    generic = {"name", "p", "class_path", "init_args", "value"}
    short = {}
    for key in keys:
        parts = key.split(".")
        n = 2 if parts[-1] in generic and len(parts) > 1 else 1
        while n < len(parts) and any(o != key and o.split(".")[-n:] == parts[-n:] for o in keys):
            n += 1
        if parts[-n:-n + 1] == ["init_args"] and n < len(parts):
            n += 1
        short[key] = ".".join(parts[-n:])
    return short


def setting_label(values: dict[str, str], short: dict[str, str]) -> str:
    def show(key: str, value: str) -> str:
        return Path(value).stem if key == "config" else value

    return ",".join(f"{short[k]}={show(k, v)}" for k, v in values.items()) or "recipe"


def folder_name(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=,+-]+", "_", label)[:120]


def parse_seeds(text: str) -> list[int]:
    """``3`` -> ``[0, 1, 2]``; ``1,5`` -> ``[1, 5]``."""
    if "," in text:
        return [int(s) for s in text.split(",") if s]
    return list(range(int(text)))


def plan_runs(grid: dict[str, list[str]], seeds: list[int], out: Path) -> list[Run]:
    short = short_keys(list(grid))
    runs = []
    settings = [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())] if grid else [{}]
    for seed in seeds:  # seed by seed, so a comparison stopped early has every setting at n seeds
        for values in settings:
            label = setting_label(values, short)
            runs.append(Run(label, values, seed, out / "runs" / folder_name(label) / f"seed{seed}"))
    return runs
