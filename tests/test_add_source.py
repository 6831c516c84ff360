"""Adding a care system is configuration only: one source YAML and its files in the inbox."""

from __future__ import annotations

import duckdb

from tests.conftest import rows, run_refresh

SOURCE_YAML = """\
# A care system that exports with pipes, Dutch headers and its own destination labels.
name: outflow_ons_dossier
contract: outflow
folder: outflow_ons_dossier
patterns: ["*.txt"]
format: csv
delimiter: "|"
encoding: utf-8
date_format: "%d/%m/%Y"
columns:
  Dossiernr: client_id
  Instelling: provider
  Werkplaats: location
  Ingang: start_date
  Einde: end_date
  Vervolg: destination
values:
  destination:
    Werk zonder begeleiding: betaald_werk_regulier
    Werk met jobcoach: betaald_werk_ondersteund
    School: opleiding
    Naar huis: thuissituatie
"""

EXPORT = """\
Dossiernr|Instelling|Werkplaats|Ingang|Einde|Vervolg
D-1|Zorgboerderij De Linde|Boerderij|01/02/2022|15/03/2023|Werk met jobcoach
D-2|Zorgboerderij De Linde|Boerderij|01/09/2021|30/06/2023|School
D-3|Zorgboerderij De Linde|Winkel|10/10/2022|01/12/2023|Naar huis
D-4|Zorgboerderij De Linde|Winkel|05/01/2020|20/12/2023|werk met JOBCOACH
"""


def test_a_new_source_needs_only_a_yaml_and_its_files(tmp_path):
    sources = tmp_path / "sources"
    sources.mkdir()
    (sources / "outflow_ons_dossier.yaml").write_text(SOURCE_YAML, encoding="utf-8")
    inbox = tmp_path / "inbox"
    (inbox / "outflow_ons_dossier").mkdir(parents=True)
    (inbox / "outflow_ons_dossier" / "export_2023.txt").write_text(EXPORT, encoding="utf-8")
    warehouse = tmp_path / "wh" / "co.duckdb"
    done = run_refresh(
        inbox, warehouse, {"CARE_OUTCOMES_SOURCES_DIR": str(sources), "CARE_OUTCOMES_PSEUDONYM_KEY": "k"}
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 loaded (4 rows)" in done.stdout
    con = duckdb.connect(str(warehouse), read_only=True)
    (summary,) = rows(con, "select * from marts.outflow_summary")
    assert (summary["provider"], summary["year"], summary["total_outflow"]) == ("Zorgboerderij De Linde", 2023, 4)
    assert (summary["supported_work_count"], summary["education_count"], summary["regular_count"]) == (2, 1, 3)
    assert summary["home_share"] == 0.25
    by_location = rows(
        con, "select location, sum(outflow_count) as n from marts.outflow_by_location group by 1 order by 1"
    )
    assert by_location == [{"location": "Boerderij", "n": 2}, {"location": "Winkel", "n": 2}]
    (load,) = rows(con, "select file_name, source, status from audit.file_loads")
    assert load == {
        "file_name": "outflow_ons_dossier/export_2023.txt",
        "source": "outflow_ons_dossier",
        "status": "loaded",
    }
    con.close()
