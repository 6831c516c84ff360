"""care-outcomes: the Dagster code location (assets, resources, jobs, CLI) of the outcome pipeline."""

__version__ = "0.1.0"
