"""Backup and restore of a warehouse (`care-outcomes backup DIR`, `care-outcomes restore DIR --warehouse FILE`).

A backup is a consistent copy, made while holding the warehouse's writer lock (no refresh can write meanwhile) and
after a CHECKPOINT: the working database (every stored version of every row and the audit history: the only copy),
the serving file, the published Parquet set and reports, and ``manifest.json`` with every file's size and SHA-256,
the warehouse it came from and the fingerprint of its pseudonymisation key. Never the key itself (it stays in the
operator's environment or secret store), never the quarantine folder (those files may hold client ids in clear) and
never the inbox. It is written into a hidden folder beside DIR and renamed to DIR when whole.

A restore checks every checksum first and refuses a damaged backup with one line; it restores into a new place and
refuses a place that already holds a warehouse unless told (``--force``, under that warehouse's writer lock). The
next refresh, with the same key, goes on from where the backup was.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
from pathlib import Path

import duckdb

from pipelines.warehouse import Paths, WarehouseFault, turn_link, writer_lock

MANIFEST = "manifest.json"
FORMAT = 1
WORK_DB, SERVING = "care_outcomes.work.duckdb", "care_outcomes.duckdb"
FOLDERS = {"parquet": ".parquet", "reports": ".reports"}  # published link -> the folder of its sets


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _fingerprint(work_db: Path) -> str | None:
    from pipelines.privacy import stored_fingerprint

    with duckdb.connect(str(work_db)) as con:
        con.execute("checkpoint")  # the write-ahead log folded in: the file alone is the whole database
        return stored_fingerprint(con)


def backup(paths: Paths, target: Path) -> list[str]:
    """Write a consistent, checksummed copy of the warehouse of ``paths`` to the new folder ``target``."""
    target = target.absolute()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise WarehouseFault(f"backup: {target} exists and is not empty; name a new folder")
    if not paths.work_db.exists():
        raise WarehouseFault(f"backup: no warehouse at {paths.warehouse} (no {paths.work_db.name})")
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    with writer_lock(paths):
        fingerprint = _fingerprint(paths.work_db)
        partial.mkdir(parents=True)
        try:
            shutil.copy2(paths.work_db, partial / WORK_DB)
            if paths.warehouse.exists():
                shutil.copy2(paths.warehouse, partial / SERVING)
            for name in FOLDERS:
                published = paths.warehouse.parent / name
                if published.exists():
                    shutil.copytree(published.resolve(), partial / name)
            files = {
                str(p.relative_to(partial)): {"size": p.stat().st_size, "sha256": _sha256(p)}
                for p in sorted(partial.rglob("*"))
                if p.is_file()
            }
            manifest = {
                "format": FORMAT,
                "made_at": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                "warehouse": str(paths.warehouse),
                "key_fingerprint": fingerprint,
                "files": files,
            }
            (partial / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
            if target.exists():
                target.rmdir()
            os.replace(partial, target)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
    size = sum(f["size"] for f in files.values())
    return [f"backup:    {target}: {len(files)} files, {size / 1e6:.1f} MB, checksums in {MANIFEST}; "
            "the key is not in it: keep CARE_OUTCOMES_PSEUDONYM_KEY with it, apart"]  # fmt: skip


def verify(source: Path) -> dict:
    """The manifest of a backup whose every file is there with its size and checksum; else one clear fault."""
    try:
        manifest = json.loads((source / MANIFEST).read_text(encoding="utf-8"))
        files = manifest["files"]
        if manifest.get("format") != FORMAT or WORK_DB not in files:
            raise ValueError
    except (OSError, ValueError, KeyError, TypeError):
        raise WarehouseFault(
            f"restore: {source} is not a care-outcomes backup ({MANIFEST} missing or unreadable)"
        ) from None
    listed = set(files)
    present = {str(p.relative_to(source)) for p in source.rglob("*") if p.is_file()} - {MANIFEST}
    for name in sorted(listed | present):
        path = source / name
        if name not in listed:
            raise WarehouseFault(f"restore: {source} is damaged: {name} is not in its manifest; not restored")
        if not path.is_file() or path.is_symlink():
            raise WarehouseFault(f"restore: {source} is damaged: {name} is missing; not restored")
        if path.stat().st_size != files[name]["size"] or _sha256(path) != files[name]["sha256"]:
            raise WarehouseFault(f"restore: {source} is damaged: {name} differs from its checksum; not restored")
    return manifest


def restore(source: Path, paths: Paths, force: bool = False) -> list[str]:
    """Restore the backup ``source`` as the warehouse of ``paths`` (a new place, or ``force``)."""
    manifest = verify(source)
    live = [p for p in (paths.work_db, paths.warehouse) if p.exists()]
    if live and not force:
        raise WarehouseFault(
            f"restore: {paths.warehouse.parent} already holds a warehouse ({live[0].name}); restore into a new place, "
            "or pass --force to replace it"
        )
    paths.warehouse.parent.mkdir(parents=True, exist_ok=True)
    with writer_lock(paths):
        for name, target in ((WORK_DB, paths.work_db), (SERVING, paths.warehouse)):
            if name in manifest["files"]:
                tmp = target.with_name(f".{target.name}.{os.getpid()}.restoring")
                shutil.copy2(source / name, tmp)
                os.replace(tmp, target)
                Path(str(target) + ".wal").unlink(missing_ok=True)
        for name, sets in FOLDERS.items():
            if (source / name).is_dir():
                folder = paths.warehouse.parent / sets / f"restored-{dt.datetime.now():%Y%m%dT%H%M%S}-{os.getpid()}"
                folder.parent.mkdir(exist_ok=True)
                shutil.copytree(source / name, folder)
                turn_link(folder, paths.warehouse.parent / name)
    fingerprint = manifest.get("key_fingerprint")
    return [
        f"restore:   {source} -> {paths.warehouse} ({len(manifest['files'])} files checked, "
        f"made {manifest['made_at']})",
        "restore:   refresh with the key it was made with"
        + (f" (fingerprint {fingerprint[:12]}...)" if fingerprint else "")
        + "; the next night goes on from the backup",
    ]
