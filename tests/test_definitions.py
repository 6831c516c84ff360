"""The Dagster code location loads, and its lineage runs inbox -> raw -> dbt layers -> marts -> serving."""

from __future__ import annotations

from dagster import AssetKey

from pipelines.definitions import defs as load_defs
from tests.conftest import MARTS

defs = load_defs()  # the code location as `dagster dev` loads it


def test_definitions_load_with_the_refresh_job():
    assert defs.resolve_job_def("refresh") is not None


def test_lineage_from_inbox_to_serving():
    graph = defs.resolve_asset_graph()
    raw = AssetKey(["raw", "ips_quarterly"])
    assert AssetKey(["inbox", "ips_quarterly"]) in graph.get(raw).parent_keys
    assert AssetKey(["inbox", "ips_quarterly_formulier"]) in graph.get(raw).parent_keys
    assert raw in graph.get(AssetKey(["staging", "stg_ips__quarterly_submissions"])).parent_keys
    serving_parents = graph.get(AssetKey(["serving", "care_outcomes"])).parent_keys
    for mart in MARTS:
        assert AssetKey(["marts", mart]) in serving_parents
    checks = {key.name for key in graph.asset_check_keys if key.asset_key == AssetKey(["marts", "ips_quarterly"])}
    assert any(name.startswith("between_ips_quarterly_paid_work_rate") for name in checks)
