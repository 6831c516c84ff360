"""Run a Great Expectations 1.x suite against data read from DuckDB, in an ephemeral GX context.

A suite is a list of datasets: a SQL query (a mart as is, or a small aggregate of it or of a raw
table) and the expectations its rows must meet. GX validates the query's DataFrame through a
pandas data source: GX 1.x has no working DuckDB data source, and the frames here are small.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb

MAX_SAMPLES = 5


@dataclass(frozen=True)
class Dataset:
    """Rows to validate: ``sql`` over the working database, identified by ``key`` columns in failure reports."""

    name: str
    sql: str
    key: Sequence[str]
    expectations: Callable[[Any], list]  # gxe module -> expectation instances (GX is imported lazily)


@dataclass(frozen=True)
class Suite:
    """The expectations of one table; ``blocking`` suites stop the publish when they fail."""

    name: str
    asset: tuple[str, ...]  # Dagster asset key path, e.g. ("marts", "ips_quarterly")
    description: str
    datasets: Sequence[Dataset]
    blocking: bool = True


@dataclass
class Outcome:
    suite: str
    evaluated: int = 0
    passed: int = 0
    failures: list[dict] = field(default_factory=list)

    @property
    def success(self) -> bool:
        return self.evaluated == self.passed

    def summary(self) -> str:
        text = f"{self.passed}/{self.evaluated} expectations passed"
        if self.failures:
            text += "; failed: " + "; ".join(
                f"{f['dataset']}: {f['expectation']} "
                f"({f['unexpected_count']} rows, e.g. {json.dumps(f['examples'][:2], default=str)})"
                for f in self.failures
            )
        return text


_batch_definitions: dict[tuple[str, str], Any] = {}  # one ephemeral GX context per process, its definitions reused


def _batch_definition(suite: str, dataset: str):
    """The GX batch definition of a dataset of a suite: made once per process (each addition to a GX context saves
    its whole configuration), then given a new DataFrame for each validation."""
    key = (suite, dataset)
    if key not in _batch_definitions:
        if not _batch_definitions:
            import great_expectations as gx
            from great_expectations.data_context.types.base import ProgressBarsConfig

            context = gx.get_context(mode="ephemeral")
            context.variables.progress_bars = ProgressBarsConfig(globally=False)
            _batch_definitions[("", "")] = context.data_sources.add_pandas("care_outcomes")
        source = _batch_definitions[("", "")]
        _batch_definitions[key] = source.add_dataframe_asset(f"{suite}.{dataset}").add_batch_definition_whole_dataframe(
            "all"
        )
    return _batch_definitions[key]


def _describe(config) -> str:
    kwargs = {k: v for k, v in config.kwargs.items() if k not in ("batch_id", "result_format")}
    return f"{config.type}({', '.join(f'{k}={v}' for k, v in kwargs.items())})"


def _plain(value):
    return value.item() if hasattr(value, "item") else value


def _examples(detail: dict) -> list:
    """Up to MAX_SAMPLES failing rows: with their key columns where the dataset has a key, else the values."""
    rows = (detail.get("partial_unexpected_index_list") or [])[:MAX_SAMPLES]
    if rows and all(isinstance(row, dict) for row in rows):
        return [{k: _plain(v) for k, v in row.items()} for row in rows]
    return [str(_plain(v)) for v in (detail.get("partial_unexpected_list") or [])[:MAX_SAMPLES]]


def run_suite(con: duckdb.DuckDBPyConnection, suite: Suite) -> Outcome:
    """Read the suite's datasets and validate them here (Great Expectations imported in this process)."""
    return validate(suite, read_frames(con, suite))


def read_frames(con: duckdb.DuckDBPyConnection, suite: Suite) -> dict[str, Any]:
    """The rows of every dataset of the suite, as DataFrames (small: marts, or aggregates of raw tables)."""
    return {dataset.name: con.execute(dataset.sql).df() for dataset in suite.datasets}


def validate(suite: Suite, frames: dict[str, Any]) -> Outcome:
    """Validate the datasets' DataFrames against their expectations in an ephemeral GX context."""
    import great_expectations as gx
    import great_expectations.expectations as gxe

    outcome = Outcome(suite.name)
    for dataset in suite.datasets:
        batch = _batch_definition(suite.name, dataset.name).get_batch(
            batch_parameters={"dataframe": frames[dataset.name]}
        )
        expectation_suite = gx.ExpectationSuite(
            name=f"{suite.name}.{dataset.name}", expectations=dataset.expectations(gxe)
        )
        result = batch.validate(
            expectation_suite,
            result_format={
                "result_format": "SUMMARY",
                "unexpected_index_column_names": list(dataset.key),
                "partial_unexpected_count": MAX_SAMPLES,
            },
        )
        for item in result.results:
            outcome.evaluated += 1
            if item.success:
                outcome.passed += 1
                continue
            outcome.failures.append(
                {
                    "dataset": dataset.name,
                    "expectation": _describe(item.expectation_config),
                    "unexpected_count": (item.result or {}).get(
                        "unexpected_count", (item.result or {}).get("observed_value")
                    ),
                    "examples": _examples(item.result or {}),
                }
            )
    return outcome
