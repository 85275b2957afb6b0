"""Training a genotype's child network from scratch (``module``) and exporting it (``export``)."""
