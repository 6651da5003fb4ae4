"""Tasks: small generic LightningModules that recipes pick with ``class_path``."""
from regkit.tasks.base import RegularizedTask
from regkit.tasks.classifier import Classifier

__all__ = ["Classifier", "RegularizedTask"]
