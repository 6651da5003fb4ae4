"""regkit: a registry of regularizers and components, assembled by YAML recipes into Lightning tasks."""
from regkit.registry import KINDS, RegistryError, available, build, entries, load_module, load_plugins, register
from regkit.spec import (
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

__version__ = "0.1.0"

__all__ = [
    "KINDS",
    "RegistryError",
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
    "load_plugins",
    "register",
    "__version__",
]
