"""Components: everything a recipe or a rule can place in a model, each registered under its kind.

* ``regularizers/``: layer regularizers (kind ``regularizer``): the dropout family, recurrent,
  spatial, DropBlock, drop-path, DropConnect;
* ``norm``: batch, ghost batch and layer norm (kind ``norm``);
* ``attention``: attention blocks with attention-dropout (kind ``attention``);
* ``penalties``, ``activation_penalties``: loss terms (kind ``penalty``);
* ``constraints``: weight projections after each optimizer step (kind ``constraint``);
* ``layouts``: what the axes of a slot's tensor mean, and which layouts a component works in;
* ``mc_dropout``: Monte-Carlo dropout prediction over every stochastic module of a model.

Layers here import only torch, regkit's errors and the registry (to register themselves).
"""
from regkit.components.layouts import EMBEDDING, FEATURES, MAPS, RECURRENT, SEQUENCE, Layout, Layouts
from regkit.components.mc_dropout import MCPrediction, mc_dropout, mc_predict, stochastic_modules

__all__ = [
    "EMBEDDING",
    "FEATURES",
    "MAPS",
    "RECURRENT",
    "SEQUENCE",
    "Layout",
    "Layouts",
    "MCPrediction",
    "mc_dropout",
    "mc_predict",
    "stochastic_modules",
]
