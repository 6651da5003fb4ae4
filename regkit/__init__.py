"""regkit: a registry of regularizers and components, assembled by YAML recipes into Lightning tasks.

The public API: the registry (``register``, ``build``, ``available``, ``entries``), the spec types
that type a recipe slot, regkit's errors, the base classes a plugin subclasses (see
docs/plugins.md), and ``regularize(model, rules)``, which places components inside any model
(docs/surgery.md). Everything else is internal and may change.
"""
from regkit.errors import BadInput, RegkitError
from regkit.registry import (
    KINDS,
    AttentionSpec,
    ConstraintSpec,
    DiscriminatorSpec,
    GanLossSpec,
    GeneratorSpec,
    NetworkSpec,
    NormSpec,
    PenaltySpec,
    Registry,
    RegistryError,
    RegularizerSpec,
    Spec,
    available,
    build,
    entries,
    load_module,
    register,
)

from regkit.rules import regularize  # noqa: E402  isort: skip

# Base classes for plugin components (docs/plugins.md).
from regkit.components.regularizers.base import DropoutBase, ScheduledRate, StochasticRegularizer  # noqa: E402  isort: skip
from regkit.components.penalties import Penalty  # noqa: E402  isort: skip
from regkit.components.constraints import Constraint  # noqa: E402  isort: skip
from regkit.gan.losses import GanLoss  # noqa: E402  isort: skip

__version__ = "0.1.0"

__all__ = [
    "KINDS",
    "BadInput",
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
    "regularize",
    "Constraint",
    "DropoutBase",
    "GanLoss",
    "Penalty",
    "ScheduledRate",
    "StochasticRegularizer",
    "__version__",
]
