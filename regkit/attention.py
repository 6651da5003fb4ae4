"""Attention blocks (kind ``attention``) with attention-dropout, on fused scaled-dot-product attention."""
