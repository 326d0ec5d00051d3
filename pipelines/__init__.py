"""Entry points that compose components from Hydra configs and hand them to Ray."""
