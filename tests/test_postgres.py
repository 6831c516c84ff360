"""PostgreSQL (issue 16), against a real server of Debian's package started by the session (conftest): the publish
and its atomic swap, programme logins with row-level security, and the same dbt project built on PostgreSQL,
mart by mart equal to the DuckDB build."""

from __future__ import annotations

import math
import subprocess
import sys
import threading
import time

import duckdb
import psycopg
import pytest

from pipelines.serving.postgres import (
    PostgresFault,
    copy_table,
    grant_centre,
    grant_program,
    masked,
    publish_postgres,
)
from pipelines.transform.project import dbt_command
from tests.conftest import MARTS, ROOT, SAMPLE, clean_env, run_refresh
from tests.test_dbt_unit_tests import UNIT_TESTS


def database(server: dict, name: str) -> str:
    """A new, empty database on the session's server; returns its DSN."""
    with psycopg.connect(server["dsn"], autocommit=True) as con:
        con.execute(f'drop database if exists "{name}" with (force)')
        con.execute(f'create database "{name}"')
    return server["dsn"].replace("dbname=postgres", f"dbname={name}")


def as_role(dsn: str, role: str) -> str:
    return dsn.replace("user=care", f"user={role}")


def table_rows(con, sql: str) -> list[tuple]:
    return sorted(con.execute(sql).fetchall(), key=lambda r: tuple((v is None, str(v)) for v in r))


def same(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return a is None and b is None
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)
    return a == b


def assert_same_rows(left: list[tuple], right: list[tuple], what: str) -> None:
    assert len(left) == len(right), f"{what}: {len(left)} rows against {len(right)}"
    for x, y in zip(left, right, strict=True):
        assert len(x) == len(y) and all(same(a, b) for a, b in zip(x, y, strict=True)), f"{what}: {x} != {y}"


def assert_marts_equal(served: duckdb.DuckDBPyConnection, pg, what: str) -> None:
    """Every mart of the DuckDB serving file and of the PostgreSQL database: the same columns in the same order,
    the same rows (doubles to 1e-9)."""
    for mart in MARTS:
        columns = [c[0] for c in served.execute(f"describe marts.{mart}").fetchall()]
        pg_columns = [
            r[0]
            for r in pg.execute(
                "select column_name from information_schema.columns where table_schema = 'marts' "
                "and table_name = %s order by ordinal_position",
                [mart],
            ).fetchall()
        ]
        assert pg_columns == columns, mart
        order = ", ".join(f'"{c}"' for c in columns)
        assert_same_rows(
            table_rows(served, f"select {order} from marts.{mart}"),
            table_rows(pg.cursor(), f"select {order} from marts.{mart}"),
            f"{mart} ({what})",
        )


# ---- the publish ---------------------------------------------------------------------------------------------


def test_the_refresh_publishes_to_postgresql_with_types_and_comments(postgres_server, tmp_path):
    dsn = database(postgres_server, "served")
    warehouse = tmp_path / "wh" / "care_outcomes.duckdb"
    done = run_refresh(SAMPLE, warehouse, env={"CARE_OUTCOMES_POSTGRES_DSN": dsn})
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"postgres:  15 marts published to {dsn} (schemas marts, audit, reference)" in done.stdout
    served = duckdb.connect(str(warehouse), read_only=True)
    with psycopg.connect(dsn) as pg:
        assert_marts_equal(served, pg, "published to PostgreSQL")
        types = dict(
            pg.execute(
                "select column_name, data_type from information_schema.columns "
                "where table_schema = 'marts' and table_name = 'ips_quarterly_national'"
            ).fetchall()
        )
        assert types["period_start"] == "date" and types["n_programs"] == "bigint"
        assert types["caseload"] == "double precision" and types["period_label"] == "text"
        assert types["caseload_sum"] == "bigint" and types["year"] == "integer"
        (comment,) = pg.execute("select col_description('marts.ips_quarterly'::regclass, 11)").fetchone()
        assert comment and "caseload" in comment.lower()
        assert pg.execute("select count(*) from audit.file_loads").fetchone()[0] == 25
        assert pg.execute("select label_nl from reference.metrics where metric = 'fte'").fetchone()[0] == (
            "FTE trajectbegeleider"
        )
        schemas = {r[0] for r in pg.execute("select nspname from pg_namespace").fetchall()}
        assert not {s for s in schemas if s.endswith(("__next", "__old"))}, schemas
    served.close()


def test_programme_login_sees_its_own_rows_and_the_national_marts_only(postgres_server, sample_warehouse):
    dsn = database(postgres_server, "logins")
    publish_postgres(sample_warehouse, dsn)
    command = [sys.executable, "-m", "pipelines.cli", "postgres-grant", "--program", "GGNET", "--role", "ggnet_bi"]
    done = subprocess.run(
        command, capture_output=True, text=True, cwd=ROOT, env=clean_env(CARE_OUTCOMES_POSTGRES_DSN=dsn), timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "role ggnet_bi sees programme GGNET and the national marts" in done.stdout
    grant_program(dsn, "LENTIS", "lentis_bi")
    publish_postgres(sample_warehouse, dsn)  # the grants and policies survive the next publish

    with psycopg.connect(as_role(dsn, "ggnet_bi")) as ggnet:
        for mart in ("ips_quarterly", "ips_yearly", "ips_benchmark", "ips_benchmark_long", "ips_submissions",
                     "fidelity_items", "fidelity_totals"):  # fmt: skip
            seen = {r[0] for r in ggnet.execute(f"select distinct program_id from marts.{mart}").fetchall()}
            assert seen == {"GGNET"}, (mart, seen)
        assert ggnet.execute("select count(*) from marts.ips_quarterly").fetchone()[0] == 8
        assert ggnet.execute("select count(*) from marts.ips_quarterly_national").fetchone()[0] == 8
        assert ggnet.execute("select count(*) from reference.metrics").fetchone()[0] > 0
        for forbidden in ("audit.file_loads", "audit.check_results", "marts.outflow_summary", "access.program_roles"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                ggnet.execute(f"select * from {forbidden}")
            ggnet.rollback()
        # no way around the policy: the programme column cannot be widened by the role
        ggnet.execute("set transaction read write")  # the login is read-only by default; not the barrier here
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            ggnet.execute("alter table marts.ips_quarterly disable row level security")
    with psycopg.connect(as_role(dsn, "lentis_bi")) as lentis:
        assert {r[0] for r in lentis.execute("select distinct program_id from marts.ips_yearly").fetchall()} == {
            "LENTIS"
        }
    with psycopg.connect(dsn) as owner:  # the publisher owns the marts: row-level security does not apply to it
        assert owner.execute("select count(distinct program_id) from marts.ips_quarterly").fetchone()[0] == 6
        granted = {  # a programme login is granted only tables it reads rows of
            t for (t,) in owner.execute(
                "select table_schema || '.' || table_name from information_schema.tables "
                "where table_schema in ('marts', 'audit', 'reference') "
                "and has_table_privilege('ggnet_bi', quote_ident(table_schema) || '.' || quote_ident(table_name), "
                "'select')"
            ).fetchall()
        }  # fmt: skip
    with psycopg.connect(as_role(dsn, "ggnet_bi")) as ggnet:
        empty = [t for t in sorted(granted) if not ggnet.execute(f"select exists (select from {t})").fetchone()[0]]
        assert granted and not empty, empty
        assert not {t for t in granted if t.startswith("audit.") or t.startswith("marts.outflow")}


def test_a_knowledge_centre_login_reads_every_programme_after_publishes_and_writes_nothing(
    postgres_server, sample_warehouse
):
    dsn = database(postgres_server, "centre")
    command = [sys.executable, "-m", "pipelines.cli", "postgres-grant", "--centre", "kenniscentrum"]
    done = subprocess.run(  # before the first publish: recorded, granted at the publish
        command, capture_output=True, text=True, cwd=ROOT, env=clean_env(CARE_OUTCOMES_POSTGRES_DSN=dsn), timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "role kenniscentrum reads every programme's rows" in done.stdout
    grant_program(dsn, "GGNET", "ggnet_bi")
    for _ in range(2):
        publish_postgres(sample_warehouse, dsn)
    with psycopg.connect(as_role(dsn, "kenniscentrum")) as centre:
        for mart in ("ips_quarterly", "ips_yearly", "ips_benchmark", "ips_benchmark_long", "ips_submissions",
                     "fidelity_items", "fidelity_totals"):  # fmt: skip
            seen = {r[0] for r in centre.execute(f"select distinct program_id from marts.{mart}").fetchall()}
            assert len(seen) >= 5 and "GGNET" in seen, (mart, seen)
        assert centre.execute("select count(*) from marts.ips_quarterly").fetchone()[0] == 47
        assert centre.execute("select count(*) from marts.ips_quarterly_national").fetchone()[0] == 8
        assert centre.execute("select count(*) from audit.check_results").fetchone()[0] > 0
        for forbidden in ("audit.file_loads", "marts.outflow_summary", "access.program_roles", "access.centre_roles"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                centre.execute(f"select * from {forbidden}")
            centre.rollback()
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            centre.execute("create temporary table t (x int)")
    # a programme's login cannot be made the centre's, nor the centre's a programme's
    with pytest.raises(PostgresFault, match="login of programme GGNET"):
        grant_centre(dsn, "ggnet_bi")
    with pytest.raises(PostgresFault, match="knowledge centre login"):
        grant_program(dsn, "LENTIS", "kenniscentrum")
    # a login in neither list reads no programme's rows, even when someone grants it the tables
    with psycopg.connect(dsn, autocommit=True) as pg:
        pg.execute("drop role if exists stray_bi")
        pg.execute("create role stray_bi login")
        pg.execute("grant usage on schema marts, access to stray_bi")
        pg.execute("grant select on marts.ips_quarterly, access.my_programmes, access.am_centre to stray_bi")
        pg.execute("grant execute on function access.may_see(text) to stray_bi")
    with psycopg.connect(as_role(dsn, "stray_bi")) as stray:
        assert stray.execute("select count(*) from marts.ips_quarterly").fetchone()[0] == 0


def test_a_reader_sees_old_or_new_marts_never_a_mix_and_is_not_blocked(postgres_server, sample_warehouse):
    dsn = database(postgres_server, "swap")
    publish_postgres(sample_warehouse, dsn)
    seen, stop = [], threading.Event()

    def read():
        with psycopg.connect(dsn, autocommit=True) as con:
            while not stop.is_set():
                started = time.monotonic()
                # one statement across two marts: both from one publish
                row = con.execute(
                    "select (select count(*) from marts.ips_quarterly), (select count(*) from marts.ips_yearly)"
                ).fetchone()
                seen.append((row, time.monotonic() - started))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for _ in range(3):
            publish_postgres(sample_warehouse, dsn)
    finally:
        stop.set()
        reader.join(30)
    assert seen and {r for r, _ in seen} == {(47, 12)}
    assert max(s for _, s in seen) < 5, "a reader is never blocked for long"


def test_a_killed_publish_leaves_the_served_schemas_as_they_were(postgres_server, sample_warehouse, tmp_path):
    dsn = database(postgres_server, "killed")
    publish_postgres(sample_warehouse, dsn)
    with psycopg.connect(dsn) as pg:
        before = pg.execute("select count(*), sum(caseload) from marts.ips_quarterly").fetchone()
    script = tmp_path / "kill.py"
    script.write_text(
        "import os, sys\n"
        "import pipelines.serving.postgres as p\n"
        "real = p.copy_table\n"
        "def dying(source, relation, pg, target, batch=50_000):\n"
        "    n = real(source, relation, pg, target, batch)\n"
        "    if 'ips_quarterly' in relation:\n"
        "        os._exit(9)  # killed half-way through the copy\n"
        "    return n\n"
        "p.copy_table = dying\n"
        f"p.publish_postgres(p.Path({str(sample_warehouse)!r}), {dsn!r})\n",
        encoding="utf-8",
    )
    done = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True, timeout=120)
    assert done.returncode == 9
    with psycopg.connect(dsn) as pg:
        assert pg.execute("select count(*), sum(caseload) from marts.ips_quarterly").fetchone() == before
    publish_postgres(sample_warehouse, dsn)  # the next publish clears what the killed one left
    with psycopg.connect(dsn) as pg:
        names = {r[0] for r in pg.execute("select nspname from pg_namespace").fetchall()}
        assert not {n for n in names if n.endswith("__next")}


def test_the_password_never_shows(postgres_server, tmp_path):
    assert masked("postgresql://care:s3cret@db.example:5432/care") == "postgresql://care:***@db.example:5432/care"
    assert masked("host=db user=care password=s3cret dbname=care") == "host=db user=care password=*** dbname=care"
    assert masked("host=db password='s3 cret' dbname=x") == "host=db password=*** dbname=x"
    assert masked("postgresql://db/care?user=care&password=s3cret") == "postgresql://db/care?user=care&password=***"
    wrong = f"host={postgres_server['host']} port=1 user=care password=s3cret dbname=postgres"
    with pytest.raises(PostgresFault) as caught:
        grant_program(wrong, "GGNET", "x_bi")
    assert "s3cret" not in str(caught.value) and "password=***" in str(caught.value)
    warehouse = tmp_path / "wh" / "care_outcomes.duckdb"
    done = run_refresh(SAMPLE, warehouse, env={"CARE_OUTCOMES_POSTGRES_DSN": wrong})
    assert done.returncode == 1, done.stdout + done.stderr
    assert "published: " in done.stdout, "the DuckDB serving file is published all the same"
    assert "postgres:  not published: step serving__postgres failed: cannot connect to PostgreSQL" in done.stdout
    assert "s3cret" not in done.stdout + done.stderr
    for path in warehouse.parent.rglob("*"):  # logs, the Dagster instance's event log, the audit tables
        if path.is_file():
            assert b"s3cret" not in path.read_bytes(), path
    again = run_refresh(SAMPLE, warehouse, env={"CARE_OUTCOMES_POSTGRES_DSN": wrong})
    assert "nothing new" not in again.stdout, "a night whose PostgreSQL publish failed is not counted as done"


# ---- the same dbt project on PostgreSQL --------------------------------------------------------------------


def test_the_dbt_project_builds_on_postgresql_and_every_mart_equals_the_duckdb_build(
    postgres_server, sample_warehouse, tmp_path
):
    dsn = database(postgres_server, "dbt_build")
    work = sample_warehouse.with_name(sample_warehouse.stem + ".work.duckdb")
    source = duckdb.connect(str(work), read_only=True)
    with psycopg.connect(dsn) as pg:
        pg.execute("create schema raw")
        for (table,) in source.execute(
            "select table_name from duckdb_tables() where schema_name = 'raw' and database_name = current_database()"
        ).fetchall():
            copy_table(source, f'raw."{table}"', pg, f'raw."{table}"')
        pg.commit()
    source.close()
    env = clean_env(
        CARE_OUTCOMES_DBT_PG_HOST=postgres_server["host"],
        CARE_OUTCOMES_DBT_PG_PORT=str(postgres_server["port"]),
        CARE_OUTCOMES_DBT_PG_USER="care",
        CARE_OUTCOMES_DBT_PG_DBNAME="dbt_build",
        DBT_LOG_PATH=str(tmp_path / "logs"),
    )
    done = subprocess.run(
        dbt_command(["build", "--target", "postgres"], target_path=tmp_path / "target"),
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:]
    unit_tests = f"{len(UNIT_TESTS)} unit tests"
    assert "ERROR=0" in done.stdout and unit_tests in done.stdout, "models, data tests and unit tests all pass"
    served = duckdb.connect(str(sample_warehouse), read_only=True)
    with psycopg.connect(dsn) as pg:
        assert_marts_equal(served, pg, "DuckDB build against the PostgreSQL build")
    served.close()


# ---- issue 25: logins that row-level security does not hold for, and a login's view of others ----------------


def test_a_role_that_bypasses_row_level_security_is_refused(postgres_server, sample_warehouse):
    dsn = database(postgres_server, "bypass")
    publish_postgres(sample_warehouse, dsn)
    with psycopg.connect(dsn, autocommit=True) as pg:
        for statement in (
            "drop role if exists boss_bi",
            "drop role if exists bypass_bi",
            "drop role if exists friend_bi",
            "drop role if exists later_bi",
            "create role boss_bi login superuser",
            "create role bypass_bi login bypassrls",
            "create role friend_bi login in role care",  # has the rights of the publisher, who owns the marts
        ):
            pg.execute(statement)
    reasons = {"boss_bi": "is a superuser", "bypass_bi": "has BYPASSRLS", "friend_bi": "has the rights of the role"}
    for role, reason in reasons.items():
        command = [sys.executable, "-m", "pipelines.cli", "postgres-grant", "--program", "GGNET", "--role", role]
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=clean_env(CARE_OUTCOMES_POSTGRES_DSN=dsn),
            timeout=120,
        )
        assert done.returncode == 2, done.stdout + done.stderr
        line = done.stderr.strip()
        assert len(line.splitlines()) == 1 and f"role {role} {reason}" in line, line
        assert "row-level security does not hold for it, so it would read every programme's rows" in line
    with psycopg.connect(dsn) as pg:
        assert pg.execute("select count(*) from access.program_roles").fetchone()[0] == 0, "nothing was recorded"

    # a role made a bypasser after its grant gets nothing at the next publish
    grant_program(dsn, "GGNET", "later_bi")
    with psycopg.connect(dsn, autocommit=True) as pg:
        pg.execute("alter role later_bi bypassrls")
    publish_postgres(sample_warehouse, dsn)
    with psycopg.connect(as_role(dsn, "later_bi")) as later, pytest.raises(psycopg.errors.InsufficientPrivilege):
        later.execute("select count(*) from marts.ips_quarterly")


def test_a_programme_login_learns_nothing_about_other_logins(postgres_server, sample_warehouse):
    dsn = database(postgres_server, "others")
    publish_postgres(sample_warehouse, dsn)
    grant_program(dsn, "GGNET", "ggnet_bi")
    grant_program(dsn, "LENTIS", "lentis_bi")
    publish_postgres(sample_warehouse, dsn)
    with psycopg.connect(as_role(dsn, "ggnet_bi"), autocommit=True) as ggnet:
        with pytest.raises(psycopg.errors.UndefinedFunction):  # no function takes another login's name
            ggnet.execute("select access.may_see('LENTIS', 'lentis_bi')")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            ggnet.execute("select * from access.program_roles")
        assert ggnet.execute("select program_id from access.my_programmes").fetchall() == [("GGNET",)]
        assert ggnet.execute("select access.may_see('GGNET'), access.may_see('LENTIS')").fetchone() == (True, False)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            ggnet.execute("set role lentis_bi")
        assert {r[0] for r in ggnet.execute("select distinct program_id from marts.ips_yearly").fetchall()} == {"GGNET"}


def test_an_earlier_may_see_is_replaced_and_its_policies_with_it(postgres_server, sample_warehouse):
    """A database published by an earlier version (may_see(text, name)) is taken over by the next publish."""
    dsn = database(postgres_server, "upgrade")
    publish_postgres(sample_warehouse, dsn)
    grant_program(dsn, "GGNET", "ggnet_bi")
    with psycopg.connect(dsn, autocommit=True) as pg:
        pg.execute(
            "create function access.may_see(program text, who name) returns boolean language sql stable "
            "security definer as $$ select true $$"
        )
    publish_postgres(sample_warehouse, dsn)
    with psycopg.connect(dsn) as pg:
        signatures = {r[0] for r in pg.execute("select oid::regprocedure::text from pg_proc where proname = 'may_see'")}
        assert signatures == {"access.may_see(text)"}
    with psycopg.connect(as_role(dsn, "ggnet_bi")) as ggnet:
        assert {r[0] for r in ggnet.execute("select distinct program_id from marts.ips_quarterly").fetchall()} == {
            "GGNET"
        }


def test_a_night_killed_in_its_postgresql_publish_is_redone_by_the_next(postgres_server, tmp_path):
    from tests.test_hostile_night import KEY, killed_at, small_inbox

    dsn = database(postgres_server, "killed_night")
    inbox, warehouse = small_inbox(tmp_path), tmp_path / "wh" / "co.duckdb"
    env = {"CARE_OUTCOMES_POSTGRES_DSN": dsn, **KEY}
    killed = killed_at("pipelines.serving.postgres", "publish_postgres", inbox, warehouse, env=env)
    assert killed.returncode == -9
    done = run_refresh(inbox, warehouse, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "nothing new" not in done.stdout and "postgres:  15 marts published" in done.stdout
    with psycopg.connect(dsn) as pg:
        assert pg.execute("select count(distinct program_id) from marts.ips_quarterly").fetchone()[0] == 5
