"""raysitter's building blocks: plain, config-agnostic classes and functions.

Only `pipelines/` reads configuration; everything here takes typed arguments.
"""
