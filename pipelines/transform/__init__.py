"""Transform: the dbt project (dbt/) run by dagster-dbt; staging -> intermediate -> marts, dbt tests as checks."""
