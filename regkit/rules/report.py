"""What rules changed in a model: one :class:`Change` per module (or parameter set) and action,
printed as a table (``regkit fit ... --print_regularization``; part of every run's record)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Change:
    """One rule's action at one place: the rule's key, the module path (or the parameter pattern),
    the module's original type, the action and what it put there."""

    rule: str
    path: str
    type: str
    action: str
    detail: str


@dataclass
class Report:
    """Every change the rules made, in order, and the penalties and constraints they built
    (``(registry name, component)`` pairs, for the caller to add to the loss / apply after steps)."""

    changes: list[Change] = field(default_factory=list)
    penalties: list[tuple[str, Any]] = field(default_factory=list)
    constraints: list[tuple[str, Any]] = field(default_factory=list)

    def rows(self) -> list[dict[str, str]]:
        return [{"rule": c.rule, "module": c.path or "(model)", "type": c.type, "action": c.action,
                 "detail": c.detail} for c in self.changes]

    def table(self) -> str:
        """The changes as an aligned text table."""
        rows = self.rows()
        if not rows:
            return "no regularization rules"
        columns = ["rule", "module", "type", "action", "detail"]
        widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in columns[:-1]}
        lines = ["  ".join(c.ljust(widths.get(c, 0)) for c in columns).rstrip()]
        lines.append("  ".join("-" * widths.get(c, 6) for c in columns))
        lines += ["  ".join(r[c].ljust(widths.get(c, 0)) for c in columns).rstrip() for r in rows]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    def __len__(self) -> int:
        return len(self.changes)
