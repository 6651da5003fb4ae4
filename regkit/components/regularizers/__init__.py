"""Layer regularizers (kind ``regularizer``): modules that act inside the forward pass. The
regularizer registry imports every module of this package on first use, so a new file registers
itself with no edit here."""
