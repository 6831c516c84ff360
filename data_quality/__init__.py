"""Great Expectations 1.x suites for the marts and the code that runs them as Dagster asset checks."""
