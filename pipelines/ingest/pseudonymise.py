"""Keyed pseudonyms for client ids: HMAC-SHA256, computed inside DuckDB so millions of rows stay vectorised.

The key comes from CARE_OUTCOMES_PSEUDONYM_KEY. Only a refresh of the bundled sample inbox may
fall back to DEVELOPMENT_KEY; any other inbox refuses to start without a key.
"""

from __future__ import annotations

import hashlib
import os
import weakref
from pathlib import Path

import duckdb

from pipelines.warehouse import SAMPLE_INBOX

KEY_VARIABLE = "CARE_OUTCOMES_PSEUDONYM_KEY"
# DEVELOPMENT KEY, PUBLIC, FOR THE BUNDLED SAMPLE DATA ONLY. Never use it for real client data.
DEVELOPMENT_KEY = "care-outcomes-sample-data-development-key-not-secret"


class MissingKey(Exception):
    """A real inbox without a pseudonymisation key."""


def is_sample(inbox: Path) -> bool:
    return Path(inbox).resolve() == SAMPLE_INBOX.resolve()


def require_key_for(inbox: Path) -> None:
    if not os.environ.get(KEY_VARIABLE) and not is_sample(inbox):
        raise MissingKey(
            f"{KEY_VARIABLE} is not set. Client ids are pseudonymised with a secret key before they are stored; "
            f"set one, e.g. `export {KEY_VARIABLE}=$(python -c 'import secrets; print(secrets.token_hex(32))')`, "
            "and keep it: the same key gives the same pseudonyms in every refresh."
        )


def current_key(inbox: Path) -> bytes:
    require_key_for(inbox)
    return (os.environ.get(KEY_VARIABLE) or DEVELOPMENT_KEY).encode("utf-8")


def install_key(con: duckdb.DuckDBPyConnection, key: bytes) -> None:
    """Put the HMAC pads in a temp table, so the key never appears in SQL text."""
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    key = key.ljust(64, b"\0")
    _install_pads(con, bytes(b ^ 0x36 for b in key), bytes(b ^ 0x5C for b in key))


def _install_pads(con: duckdb.DuckDBPyConnection, ipad: bytes, opad: bytes) -> None:
    con.execute("create or replace temp table _hmac_key (ipad blob, opad blob)")
    con.execute("insert into _hmac_key values (?, ?)", [ipad, opad])
    _pads[con] = (ipad, opad)


# per connection (while it lives): the pads installed in its _hmac_key
_pads: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def copy_key(source: duckdb.DuckDBPyConnection, target: duckdb.DuckDBPyConnection) -> None:
    """The key installed in ``source``, if any, into ``target`` (another connection: temp tables are its own)."""
    if source in _pads:
        _install_pads(target, *_pads[source])


def key_fingerprint(con: duckdb.DuckDBPyConnection) -> str:
    """A digest of the key installed in ``con`` ('' without one): lines read under another key are other rows."""
    if con not in _pads:
        return ""
    ipad, opad = _pads[con]
    return hashlib.sha256(hashlib.sha256(opad + ipad).digest()).hexdigest()


def hmac_sql(expr: str) -> str:
    """SQL for the hex HMAC-SHA256 of a text expression (NULL stays NULL); needs install_key() first."""
    inner = f"unhex(sha256((select ipad from _hmac_key) || encode({expr})))"
    return f"case when {expr} is null then null else sha256((select opad from _hmac_key) || {inner}) end"
