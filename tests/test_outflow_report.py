"""ICT Maatwerk's outflow report 2023 (seeds/000) from the bundled Dutch CSV exports.

The published figures are asserted as printed (whole percentages, so to half a percentage point),
and every mart value is also checked exactly against an independent count of the CSV files.
"""

from __future__ import annotations

import csv
import datetime as dt
import statistics
from collections import Counter

import pytest
import yaml

from tests.conftest import ROOT, SAMPLE, rows

PROVIDER = "ICT Maatwerk"
HALF_PERCENT = 0.005


@pytest.fixture()
def summary(serving):
    found = {r["year"]: r for r in rows(serving, "select * from marts.outflow_summary where provider = ?", [PROVIDER])}
    assert set(found) == {2022, 2023}
    return found


def test_published_2023_figures(summary):
    s = summary[2023]
    assert s["total_outflow"] == 65  # "In totaal zijn er 65 deelnemers uitgestroomd"
    assert s["paid_work_count"] == 18  # "18 deelnemers uitgestroomd naar betaald werk"
    assert s["supported_work_count"] == 17  # "met ondersteuning van onze jobcoach"
    assert s["supported_work_share"] == pytest.approx(0.26, abs=HALF_PERCENT)  # "van 14 naar 26 procent"
    assert s["education_count"] == 10  # "10 deelnemers doorgestroomd naar een opleiding"
    assert s["education_share"] == pytest.approx(0.15, abs=HALF_PERCENT)  # "goed voor 15%"
    assert s["regular_count"] == 28 == s["paid_work_count"] + s["education_count"]
    assert s["regular_share"] == pytest.approx(0.43, abs=HALF_PERCENT)  # "43% ... reguliere setting"
    assert s["other_daycare_share"] == pytest.approx(0.22, abs=HALF_PERCENT)  # "22% ... andere dagbesteding"
    total_of_shares = sum(s[k] for k in ("regular_share", "other_daycare_share", "home_share", "other_share"))
    assert total_of_shares == pytest.approx(1.0, abs=1e-12)


def test_published_2023_destinations(serving):
    counts = {
        r["destination"]: r["outflow_count"]
        for r in rows(
            serving,
            "select destination, outflow_count from marts.outflow_by_destination where provider = ? and year = 2023",
            [PROVIDER],
        )
    }
    assert len(counts) == 9, "every canonical destination is present"
    assert counts["andere_dagbesteding"] == 14
    assert counts["pensioen"] == 1  # "Een van de deelnemers is ... met pensioen gegaan"
    assert counts["vrijwilligerswerk"] == 0  # "geen deelnemers uitgestroomd naar vrijwilligerswerk"
    # the rest went home, to a closed setting or is unknown
    assert counts["thuissituatie"] + counts["gesloten_setting"] + counts["onbekend"] == 65 - 28 - 14 - 1


def test_year_over_year(summary):
    old, new = summary[2022], summary[2023]
    assert old["total_outflow"] == 87  # "tegen 87 in 2022"
    assert old["supported_work_count"] == 12
    assert old["supported_work_share"] == pytest.approx(0.14, abs=HALF_PERCENT)  # "een groei van 14 ..."
    assert old["regular_share"] < new["regular_share"]  # "procentueel meer ... naar de reguliere sector"
    assert old["home_share"] < new["home_share"]  # "toename van de uitstroom naar thuissituatie"
    assert old["other_daycare_share"] > new["other_daycare_share"]
    assert new["prev_total_outflow"] == 87
    assert new["regular_share_change"] == pytest.approx(28 / 65 - 28 / 87, abs=1e-12)
    assert old["prev_total_outflow"] is None and old["regular_share_change"] is None


def test_locations(serving):
    found = rows(
        serving,
        "select location, sum(outflow_count) as n from marts.outflow_by_location "
        "where provider = ? and year = 2023 group by location order by location",
        [PROVIDER],
    )
    assert [r["location"] for r in found] == ["Arnhem", "Doetinchem", "Nijmegen"]
    assert sum(r["n"] for r in found) == 65


def _independent(year: int):
    """Count the CSV export directly, mapping labels with the source YAML's own table."""
    source = yaml.safe_load((ROOT / "pipelines/ingest/sources/outflow_zorgdossier.yaml").read_text(encoding="utf-8"))
    labels = {k.casefold(): v for k, v in source["values"]["destination"].items()}
    path = SAMPLE / "outflow_zorgdossier" / f"ict_maatwerk_uitschrijvingen_{year}.csv"
    with path.open(encoding="cp1252", newline="") as fh:
        records = list(csv.DictReader(fh, delimiter=";"))
    parse = lambda s: dt.datetime.strptime(s, "%d-%m-%Y").date()  # noqa: E731
    destinations = Counter(labels[r["Reden uitschrijving"].casefold()] for r in records)
    days = [(parse(r["Einddatum"]) - parse(r["Startdatum"])).days for r in records]
    steps = [
        (int(r["Trede participatieladder start"]), int(r["Trede participatieladder eind"]))
        for r in records
        if r["Trede participatieladder start"] and r["Trede participatieladder eind"]
    ]
    by_location = Counter(r["Locatie"] for r in records)
    return destinations, statistics.median(days), steps, by_location, len(records)


@pytest.mark.parametrize("year", [2022, 2023])
def test_marts_match_an_independent_count_of_the_export(serving, year):
    destinations, median_days, steps, by_location, total = _independent(year)
    published = {
        r["destination"]: r
        for r in rows(
            serving, "select * from marts.outflow_by_destination where provider = ? and year = ?", [PROVIDER, year]
        )
    }
    for code, row in published.items():
        assert row["outflow_count"] == destinations.get(code, 0), code
        assert row["outflow_share"] == pytest.approx(destinations.get(code, 0) / total, abs=1e-12)
    (summary,) = rows(serving, "select * from marts.outflow_summary where provider = ? and year = ?", [PROVIDER, year])
    assert summary["median_trajectory_days"] == pytest.approx(median_days)
    (ladder,) = rows(serving, "select * from marts.outflow_ladder where provider = ? and year = ?", [PROVIDER, year])
    assert ladder["n_with_steps"] == len(steps)
    assert ladder["moved_up_share"] == pytest.approx(sum(b > a for a, b in steps) / len(steps), abs=1e-12)
    assert ladder["stable_share"] == pytest.approx(sum(b == a for a, b in steps) / len(steps), abs=1e-12)
    assert ladder["moved_down_share"] == pytest.approx(sum(b < a for a, b in steps) / len(steps), abs=1e-12)
    location_totals = {
        r["location"]: r["location_outflow"]
        for r in rows(
            serving,
            "select distinct location, location_outflow from marts.outflow_by_location where provider = ? and year = ?",
            [PROVIDER, year],
        )
    }
    assert location_totals == dict(by_location)


def test_other_sample_providers_come_through_excel_and_generic_sources(serving):
    providers = {
        r["provider"]: r["total_outflow"]
        for r in rows(serving, "select provider, total_outflow from marts.outflow_summary where year = 2023")
    }
    assert providers == {"ICT Maatwerk": 65, "De Werkplaats": 33, "Stichting Dagwerk": 14}
