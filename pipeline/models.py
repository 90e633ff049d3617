"""Formula models, model registry and pre-labeling jobs (see issue 5)."""
