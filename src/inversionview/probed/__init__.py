"""Probed models: loading, training, and reading activations at named sites."""

from inversionview.probed.model import ProbedModel, load_probed, new_gpt2
from inversionview.probed.sites import Site, all_sites, parse_site

__all__ = ["ProbedModel", "Site", "all_sites", "load_probed", "new_gpt2", "parse_site"]
