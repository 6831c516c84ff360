"""Great Expectations suites (data_quality/) as Dagster asset checks on the raw tables and marts.

Blocking suites fail with severity ERROR and stop everything downstream, the publish included;
the others warn. Each check reads the working database read-only after its table was built.
"""

import json

import duckdb
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetKey,
    ConfigurableResource,
    InitResourceContext,
    MetadataValue,
    asset_check,
)
from pydantic import PrivateAttr

from data_quality.runner import MAX_SAMPLES, Outcome, Suite, read_frames
from data_quality.suites import ALL_SUITES
from data_quality.worker import Validator, take
from pipelines.warehouse import WarehouseResource


class QualityResource(ConfigurableResource):
    """Where a run validates its suites: a worker process of its own (data_quality.worker), started when the run
    starts (or before, by the command line), so importing Great Expectations overlaps the run's first steps."""

    _validator: Validator | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        self._validator = take()

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        if self._validator is not None:
            self._validator.close()

    def validate(self, suite: Suite, frames: dict) -> Outcome:
        return (self._validator or Validator()).validate(suite, frames)


def build_check(suite: Suite):
    @asset_check(
        asset=AssetKey(list(suite.asset)),
        name=f"gx_{suite.name}",
        description=f"Great Expectations suite {suite.name}: {suite.description}",
        blocking=suite.blocking,
    )
    def _check(
        context: AssetCheckExecutionContext, warehouse: WarehouseResource, quality: QualityResource
    ) -> AssetCheckResult:
        severity = AssetCheckSeverity.ERROR if suite.blocking else AssetCheckSeverity.WARN
        with warehouse.connect(read_only=True) as con:
            try:
                frames = read_frames(con, suite)
            except duckdb.Error as exc:
                return AssetCheckResult(
                    passed=False,
                    severity=severity,
                    description=f"suite {suite.name} could not read its data: {str(exc).splitlines()[0]}",
                )
        outcome = quality.validate(suite, frames)
        failing = [
            {"expectation": f["expectation"], "rows": f["unexpected_count"], "examples": f["examples"][:MAX_SAMPLES]}
            for f in outcome.failures
        ]
        return AssetCheckResult(
            passed=outcome.success,
            severity=severity,
            description=outcome.summary()[:1000],
            metadata={
                "evaluated_expectations": outcome.evaluated,
                "successful_expectations": outcome.passed,
                "failing_rows": MetadataValue.json(json.loads(json.dumps(failing, default=str))),
            },
        )

    _check.__name__ = f"gx_{suite.name}"
    return _check


def severity_of(evaluation) -> str:
    """ERROR or WARN of an evaluated check (dbt tests carry none: they block, as ERROR)."""
    return evaluation.severity.value if evaluation.severity else "ERROR"


def gx_checks() -> list:
    """One asset check per suite of data_quality/suites."""
    return [build_check(suite) for suite in ALL_SUITES]
