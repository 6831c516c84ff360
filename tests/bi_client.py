"""What a BI tool on SQLAlchemy (Superset, SQL Lab) does with the README's DuckDB URI, as one check that runs under
whichever SQLAlchemy is installed: the project's (2.0) in the test process, Superset's own (1.4) in a venv of its
own (tests/superset_stack.txt). Needs only sqlalchemy, duckdb-engine and duckdb, so it imports nothing of the
project.

    python tests/bi_client.py SERVING_FILE URI_OPTIONS SCRATCH_DIR   # prints the result as JSON
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def attempts(serving_file: Path, scratch: Path) -> dict[str, str]:
    """What a SQL Lab user might try beyond the marts: read a file of the server (Superset's config with its secret
    key), write one, attach the working database with the person-level rows."""
    secret = scratch / "superset_config.py"
    secret.write_text("SECRET_KEY = 'do-not-leak'\n", encoding="utf-8")
    work = serving_file.with_name(serving_file.stem + ".work.duckdb")
    return {
        "read_text": f"select * from read_text('{secret}')",
        "read_csv": f"select * from read_csv('{secret}')",
        "copy_to": f"copy (select 1) to '{scratch / 'out.csv'}'",
        "attach": f"attach '{work}' as work (read_only)",
    }


def check(serving_file: Path, options: str, scratch: Path) -> dict:
    """Reflect the marts as Superset does and try every attempt; returns what happened, for the test to judge."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(f"duckdb:///{serving_file}?{options}")
    result: dict = {"sqlalchemy": sqlalchemy.__version__, "attempts": {}}
    try:
        inspector = sqlalchemy.inspect(engine)
        result["marts"] = sorted(inspector.get_table_names(schema="marts"))
        result["uncommented"] = [
            f"{mart}.{c['name']}"
            for mart in result["marts"]
            for c in inspector.get_columns(mart, schema="marts")
            if not c.get("comment")
        ]
        period = next(c for c in inspector.get_columns("ips_quarterly", schema="marts") if c["name"] == "period_start")
        result["period_start_is_date"] = isinstance(period["type"], sqlalchemy.Date)
        with engine.connect() as con:
            result["quarters"] = con.exec_driver_sql("select count(*) from marts.ips_quarterly").fetchall()[0][0]
            for name, sql in attempts(serving_file, scratch).items():
                try:
                    con.exec_driver_sql(sql)
                    result["attempts"][name] = "allowed"
                except sqlalchemy.exc.DBAPIError as exc:
                    result["attempts"][name] = "refused" if "Permission Error" in str(exc) else f"failed: {exc}"[:300]
        result["file_written"] = (scratch / "out.csv").exists()
    finally:
        engine.dispose()
    return result


if __name__ == "__main__":
    print(json.dumps(check(Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]))))
