"""Ingest: inbound files -> raw tables.

The contracts (``contracts/``) and the sources that map files onto them (``sources/``) form the registry
(``registry.py``). Each file is read (``read.py``), checked against its contract (``validate.py``), client ids
are pseudonymised (``pseudonymise.py``), and ``load.decide`` chooses its fate. ``assets.py`` holds the Dagster assets.
"""
