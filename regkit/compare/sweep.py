"""A comparison's grid as a W&B grid sweep, for ``wandb agent`` on many machines."""
from __future__ import annotations

from typing import Any

from regkit.compare.results import LOWER_IS_BETTER


def sweep_config(grid: dict[str, list[str]], seeds: list[int], passthrough: list[str], metric: str,
                 name: str) -> dict[str, Any]:
    """The same grid as a W&B grid sweep: ``wandb sweep FILE`` then ``wandb agent ID`` on each
    machine; the agent runs ``regkit fit <options> --KEY=VALUE ...`` per (setting, seed)."""
    import yaml

    def value(text: str) -> Any:
        parsed = yaml.safe_load(text)
        # the agent writes --KEY=VALUE with Python's str(): keep null and structures as recipe text
        return parsed if isinstance(parsed, (str, int, float, bool)) else text

    configs: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(passthrough):
        if passthrough[i] == "--config" and i + 1 < len(passthrough):
            configs += passthrough[i:i + 2]
            i += 2
            continue
        (configs if passthrough[i].startswith("--config=") else rest).append(passthrough[i])
        i += 1
    parameters = {key: {"values": [value(v) for v in values]} for key, values in grid.items()}
    parameters["seed_everything"] = {"values": seeds}
    goal = "minimize" if any(word in metric for word in LOWER_IS_BETTER) else "maximize"
    return {
        "name": name,
        "method": "grid",
        "metric": {"name": metric, "goal": goal},
        "parameters": parameters,
        # the recipe first, then the grid point (a varied recipe file overrides the base recipe),
        # then the other options (which override both), as each `regkit compare` run has them
        "command": ["regkit", "fit", *configs, "${args}", *rest],
    }
