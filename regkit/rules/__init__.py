"""Rules that place regkit's components inside a built model, any model: a timm backbone, a
Hugging Face transformer, a user's own ``nn.Module`` (see docs/surgery.md).

One mechanism, three doors: :func:`regularize` (``regkit.regularize(model, rules)``), the
``regularize:`` key of every task, and the :class:`regkit.callbacks.Regularize` callback for any
LightningModule. ``rule.py`` parses a rule, ``apply.py`` applies it, ``report.py`` is the table of
what changed.
"""
from regkit.rules.apply import module_table, regularize, selected_modules
from regkit.rules.report import Change, Report
from regkit.rules.rule import FIELDS, Rule, parse_rules

__all__ = ["FIELDS", "Change", "Report", "Rule", "module_table", "parse_rules", "regularize", "selected_modules"]
