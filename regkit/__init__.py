"""regkit: a registry of regularizers and components, assembled by YAML recipes into Lightning tasks.

The public API: the registry (``register``, ``build``, ``available``, ``entries``), the spec types
that type a recipe slot, regkit's errors, and the base classes a plugin subclasses (see
docs/plugins.md). Everything else is internal and may change.
"""
from regkit.errors import RegkitError
from regkit.registry import KINDS, Registry, RegistryError, available, build, entries, load_module, register
from regkit.spec import (  # the kinds' spec types, made by regkit.registry
    AttentionSpec,
    ConstraintSpec,
    DiscriminatorSpec,
    GanLossSpec,
    GeneratorSpec,
    NetworkSpec,
    NormSpec,
    PenaltySpec,
    RegularizerSpec,
    Spec,
)

# Base classes for plugin components (docs/plugins.md).
from regkit.regularizers.base import DropoutBase, StochasticRegularizer  # noqa: E402  isort: skip
from regkit.penalties import Penalty  # noqa: E402  isort: skip
from regkit.constraints import Constraint  # noqa: E402  isort: skip
from regkit.gan.losses import GanLoss  # noqa: E402  isort: skip

__version__ = "0.1.0"

__all__ = [
    "KINDS",
    "Registry",
    "RegistryError",
    "RegkitError",
    "Spec",
    "AttentionSpec",
    "ConstraintSpec",
    "DiscriminatorSpec",
    "GanLossSpec",
    "GeneratorSpec",
    "NetworkSpec",
    "NormSpec",
    "PenaltySpec",
    "RegularizerSpec",
    "available",
    "build",
    "entries",
    "load_module",
    "register",
    "Constraint",
    "DropoutBase",
    "GanLoss",
    "Penalty",
    "StochasticRegularizer",
    "__version__",
]
