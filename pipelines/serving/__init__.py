"""Serving: the serving file (and Parquet) BI tools read, published atomically after the checks passed."""
