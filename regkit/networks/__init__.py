"""Networks (kind ``network``) assembled from registry parts. The network registry imports every
module of this package on first use, so a new network file registers itself with no edit here."""
