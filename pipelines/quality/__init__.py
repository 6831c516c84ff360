"""Quality: the Great Expectations suites of data_quality/ as Dagster asset checks on the raw tables and marts."""
