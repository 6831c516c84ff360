"""Inbound files -> raw tables: read (read.py), check against the contract (validate.py), decide each file's fate (load.py)."""
