"""Great Expectations suites (data_quality/) as Dagster asset checks on the raw tables and marts.

Blocking suites fail with severity ERROR and stop everything downstream, the publish included;
the others warn. Each check reads the working database read-only after its table was built. The suites of the
raw tables are a step each, right after their table (they gate dbt); the suites of the marts, which dbt builds in
one step, are one step too, whose suites the validator runs on both cores.
"""

import json

import duckdb
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckKey,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    ConfigurableResource,
    InitResourceContext,
    MetadataValue,
    asset_check,
    multi_asset_check,
)
from pydantic import PrivateAttr

from data_quality.runner import MAX_SAMPLES, Outcome, Suite, read_frames
from data_quality.suites import ALL_SUITES
from data_quality.worker import ValidationError, Validator, take
from pipelines.resources import WarehouseResource


class QualityResource(ConfigurableResource):
    """Where a run validates its suites: a worker process of its own (data_quality.worker), started when the run
    starts (or before, by the command line), so importing Great Expectations overlaps the run's first steps."""

    _validator: Validator | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        self._validator = take()

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        if self._validator is not None:
            self._validator.close()

    def validate_many(self, requests: list[tuple[Suite, dict]]) -> list[Outcome | ValidationError]:
        return (self._validator or Validator()).validate_many(requests)


def _severity(suite: Suite) -> AssetCheckSeverity:
    return AssetCheckSeverity.ERROR if suite.blocking else AssetCheckSeverity.WARN


def _check_key(suite: Suite) -> AssetCheckKey:
    return AssetCheckKey(AssetKey(list(suite.asset)), f"gx_{suite.name}")


def _description(suite: Suite) -> str:
    return f"Great Expectations suite {suite.name}: {suite.description}"


def _unvalidated(suite: Suite, why: str) -> AssetCheckResult:
    key = _check_key(suite)
    return AssetCheckResult(
        asset_key=key.asset_key, check_name=key.name, passed=False, severity=_severity(suite), description=why
    )


def _result(suite: Suite, outcome: Outcome) -> AssetCheckResult:
    key = _check_key(suite)
    failing = [
        {"expectation": f["expectation"], "rows": f["unexpected_count"], "examples": f["examples"][:MAX_SAMPLES]}
        for f in outcome.failures
    ]
    return AssetCheckResult(
        asset_key=key.asset_key,
        check_name=key.name,
        passed=outcome.success,
        severity=_severity(suite),
        description=outcome.summary()[:1000],
        metadata={
            "evaluated_expectations": outcome.evaluated,
            "successful_expectations": outcome.passed,
            "failing_rows": MetadataValue.json(json.loads(json.dumps(failing, default=str))),
        },
    )


def _frames(warehouse: WarehouseResource, suites: list[Suite]) -> dict[str, dict | AssetCheckResult]:
    """Suite name -> its datasets' frames, or the failed result of a suite whose data cannot be read."""
    read: dict[str, dict | AssetCheckResult] = {}
    with warehouse.connect(read_only=True) as con:
        for suite in suites:
            try:
                read[suite.name] = read_frames(con, suite)
            except duckdb.Error as exc:
                why = f"suite {suite.name} could not read its data: {str(exc).splitlines()[0]}"
                read[suite.name] = _unvalidated(suite, why)
    return read


def _results(warehouse: WarehouseResource, quality: QualityResource, suites: list[Suite]):
    """The check result of each suite, in order: all validated in one request."""
    read = _frames(warehouse, suites)
    ready = [(suite, read[suite.name]) for suite in suites if not isinstance(read[suite.name], AssetCheckResult)]
    outcomes = dict(zip((suite.name for suite, _ in ready), quality.validate_many(ready), strict=True))
    for suite in suites:
        outcome = outcomes.get(suite.name, read[suite.name])
        if isinstance(outcome, AssetCheckResult):
            yield outcome
        elif isinstance(outcome, ValidationError):
            yield _unvalidated(suite, f"suite {suite.name} could not be validated: {outcome}")
        else:
            yield _result(suite, outcome)


def build_check(suite: Suite):
    """One suite as a check of its own step."""

    @asset_check(
        asset=_check_key(suite).asset_key,
        name=_check_key(suite).name,
        description=_description(suite),
        blocking=suite.blocking,
    )
    def _check(
        context: AssetCheckExecutionContext, warehouse: WarehouseResource, quality: QualityResource
    ) -> AssetCheckResult:
        return next(_results(warehouse, quality, [suite]))

    _check.__name__ = _check_key(suite).name
    return _check


def build_checks(suites: list[Suite], name: str):
    """Suites of assets one step builds (dbt's marts) as the checks of one step, validated in one request."""

    @multi_asset_check(
        name=name,
        specs=[
            AssetCheckSpec(
                name=_check_key(suite).name,
                asset=_check_key(suite).asset_key,
                description=_description(suite),
                blocking=suite.blocking,
            )
            for suite in suites
        ],
        can_subset=True,
        description="Great Expectations suites of the marts, validated together on both cores",
    )
    def _checks(context: AssetCheckExecutionContext, warehouse: WarehouseResource, quality: QualityResource):
        selected = context.selected_asset_check_keys
        yield from _results(warehouse, quality, [suite for suite in suites if _check_key(suite) in selected])

    return _checks


def severity_of(evaluation) -> str:
    """ERROR or WARN of an evaluated check (dbt tests carry none: they block, as ERROR)."""
    return evaluation.severity.value if evaluation.severity else "ERROR"


def gx_checks() -> list:
    """The suites of the raw tables a step each (each gates dbt as soon as its table is loaded); those of the marts
    one step."""
    raw = [suite for suite in ALL_SUITES if suite.asset[0] == "raw"]
    marts = [suite for suite in ALL_SUITES if suite.asset[0] != "raw"]
    return [build_check(suite) for suite in raw] + [build_checks(marts, "gx_marts")]
