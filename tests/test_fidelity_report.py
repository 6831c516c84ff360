"""The fidelity table of the IPS report (seeds/001, section 2.2) from the bundled sample."""

from __future__ import annotations

import pytest

from tests.conftest import rows

# GGNet's scores as printed in the report (None = nvt), IPS-A then IPS-O.
GGNET = {
    "BZ1a": (5, 5),
    "BZ1b": (None, None),
    "BZ1c": (None, None),
    "BZ2": (5, 5),
    "BZ3": (5, 5),
    "OR1": (4, 4),
    "OR2": (4, 4),
    "OR3": (4, 4),
    "OR4": (4, 4),
    "OR5": (4, 4),
    "OR6": (4, 4),
    "OR7": (4, 4),
    "OR8": (5, 5),
    "BG1a": (5, None),
    "BG1b": (None, 5),
    "BG2": (5, 5),
    "BG3a": (4, None),
    "BG3b": (None, 4),
    "BG4": (None, 5),
    "BG5a": (4, None),
    "BG5b": (None, 2),
    "BG6": (5, 5),
    "BG7": (4, 4),
    "BG8a": (5, None),
    "BG8b": (None, 2),
    "BG9a": (5, None),
    "BG9b": (None, 5),
    "BG10": (5, None),
    "BG11": (1, None),
    "BG12": (5, 5),
    "BG13": (4, 4),
    "BG14": (5, 5),
    "BG15": (2, 2),
    "BG16": (3, 3),
}


def test_ggnet_totals_and_bands(serving):
    (row,) = rows(serving, "select * from marts.fidelity_totals where program_id = 'GGNET'")
    assert (row["total_ips_a"], row["total_ips_o"]) == (110, 104)  # "Totaal: 110 104"
    assert (row["max_ips_a"], row["max_ips_o"]) == (130, 125)  # 26 and 25 scored items
    assert (row["band_ips_a"], row["band_ips_o"]) == ("good", "good")  # 84.6% and 83.2%: 80% <= share < 92%


def test_ggnet_item_scores_as_printed(serving):
    found = rows(
        serving,
        "select item_code, section, item_label, score_ips_a, score_ips_o from marts.fidelity_items "
        "where program_id = 'GGNET' order by sort_order",
    )
    assert {r["item_code"]: (r["score_ips_a"], r["score_ips_o"]) for r in found} == GGNET
    assert [r["item_code"] for r in found][:3] == ["BZ1a", "BZ1b", "BZ1c"]
    labels = {r["item_code"]: (r["section"], r["item_label"]) for r in found}
    assert labels["BG16"] == ("Begeleiding", "Assertieve omgang en outreach")
    assert labels["OR8"] == ("Organisatie", "IPS-ondersteuning organisatieleiding")


def test_national_item_mean_worked_by_hand(serving):
    """BG2 over each programme's latest assessment: IPS-A GGNet 5, Altrecht (2018) 3, Lentis 3,
    Mondriaan 5, Parnassia 3 -> 19 / 5 = 3.8; IPS-O 5, 3, 4, 4 (Lentis has no IPS-O) -> 16 / 4 = 4.0.
    Altrecht's 2017 assessment (4, 4) is superseded and does not count."""
    found = rows(
        serving,
        "select distinct national_mean_ips_a, national_mean_ips_o from marts.fidelity_items where item_code = 'BG2'",
    )
    assert found == [{"national_mean_ips_a": pytest.approx(3.8), "national_mean_ips_o": pytest.approx(4.0)}]


def test_two_assessments_and_an_ips_a_only_programme(serving):
    altrecht = rows(
        serving,
        "select assessment_date, is_latest_assessment from marts.fidelity_totals "
        "where program_id = 'ALTRECHT' order by assessment_date",
    )
    assert [(str(r["assessment_date"]), r["is_latest_assessment"]) for r in altrecht] == [
        ("2017-10-05", False),
        ("2018-10-10", True),
    ]
    (lentis,) = rows(serving, "select * from marts.fidelity_totals where program_id = 'LENTIS'")
    assert lentis["total_ips_a"] is not None and lentis["max_ips_a"] == 130
    assert (lentis["total_ips_o"], lentis["max_ips_o"], lentis["band_ips_o"]) == (None, None, None)


def test_totals_are_the_sums_of_the_items(serving):
    mismatches = serving.execute("""
        select t.program_id, t.assessment_date
        from marts.fidelity_totals t
        join (select program_id, assessment_date, sum(score_ips_a) a, sum(score_ips_o) o,
                     5 * count(score_ips_a) ma, 5 * count(score_ips_o) mo
              from marts.fidelity_items group by all) i using (program_id, assessment_date)
        where t.total_ips_a is distinct from i.a or t.total_ips_o is distinct from i.o
           or t.max_ips_a is distinct from nullif(i.ma, 0) or t.max_ips_o is distinct from nullif(i.mo, 0)
    """).fetchall()
    assert mismatches == []
