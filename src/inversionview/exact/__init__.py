"""Exact ε-preimages by brute force over an input space, and the decoder measured against them."""
