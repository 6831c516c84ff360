"""How dbt nodes appear in Dagster: keyed <schema>/<name> and grouped by dbt layer."""

from collections.abc import Mapping
from typing import Any

from dagster import AssetKey
from dagster_dbt import DagsterDbtTranslator

_RELATIONS = ("model", "seed", "snapshot")


class CareOutcomesTranslator(DagsterDbtTranslator):
    """Models and seeds are keyed <schema>/<name> (marts/ips_quarterly); sources keep dbt's key (raw/ips_quarterly),
    which is the ingest asset's, so the raw table is one node in the lineage."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> AssetKey:
        """<schema>/<name> for tables and views."""
        if dbt_resource_props["resource_type"] in _RELATIONS:
            return AssetKey([dbt_resource_props["schema"], dbt_resource_props["name"]])
        return super().get_asset_key(dbt_resource_props)

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        """One group per dbt layer (staging, intermediate, marts, reference)."""
        if dbt_resource_props["resource_type"] in _RELATIONS:
            return dbt_resource_props["schema"]
        return super().get_group_name(dbt_resource_props)
