"""Ingest: inbound files -> raw tables.

The contracts (``contracts/``) and the sources that map files onto them (``sources/``) form the registry
(``registry.py``). Each file is read (``read.py``) and checked against its contract (``validate.py``) by
``load.prepare``; ``load.finish`` decides its fate, client ids pseudonymised (``pseudonymise.py``) on the way
into raw. ``assets.py`` holds the Dagster assets.
"""
