"""Tasks: small generic LightningModules that recipes pick with ``class_path``."""
from regkit.tasks.base import RegularizedTask
from regkit.tasks.classifier import Classifier
from regkit.tasks.gan import GAN
from regkit.tasks.language_model import LanguageModel

__all__ = ["Classifier", "GAN", "LanguageModel", "RegularizedTask"]
