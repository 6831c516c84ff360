"""The reports as Dagster assets, downstream of the serving file: they are made only from marts whose blocking
checks passed and that were published."""

import os
from collections.abc import Mapping

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    ConfigurableResource,
    MaterializeResult,
    MetadataValue,
    multi_asset,
)

from pipelines.reporting.build import write_reports
from pipelines.reporting.common import DEFAULT_MIN_COUNT, ReportError, default_privacy
from pipelines.resources import WarehouseResource
from pipelines.serving.assets import SERVING_KEY
from pipelines.serving.publish import REPORTS_OUTPUT, record_output

IPS_REPORTS_KEY = AssetKey(["reports", "ips"])
OUTFLOW_REPORTS_KEY = AssetKey(["reports", "outflow"])
REPORTS_STEP = "feedback_reports"  # the one step (multi-asset) that makes both
REPORTS_LINE = "summary_line"  # metadata of the IPS reports asset: the refresh summary's line


class ReportsResource(ConfigurableResource):
    """CARE_OUTCOMES_REPORT_MIN_COUNT (per-location counts below it show as '<N', default 5) and
    CARE_OUTCOMES_CHROMIUM (the browser for the PDFs: empty finds one, 'off' makes none)."""

    min_count: int = DEFAULT_MIN_COUNT
    chromium: str = ""

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> "ReportsResource":
        raw = environ.get("CARE_OUTCOMES_REPORT_MIN_COUNT", "").strip()
        if raw and not (raw.isdigit() and int(raw) >= 1):
            raise ReportError(f"CARE_OUTCOMES_REPORT_MIN_COUNT={raw}: a whole number of at least 1 is expected")
        return cls(min_count=int(raw) if raw else DEFAULT_MIN_COUNT, chromium=environ.get("CARE_OUTCOMES_CHROMIUM", ""))


def _files(paths: dict[str, object]) -> MetadataValue:
    return MetadataValue.json({name: str(path) for name, path in paths.items()})


@multi_asset(
    specs=[
        AssetSpec(
            IPS_REPORTS_KEY,
            deps=[SERVING_KEY],
            group_name="reports",
            kinds={"html", "pdf"},
            description="One feedback report per IPS programme (reports/ips/<program_id>.html and .pdf): "
            "Tables 1-4, Figures 1-3, fidelity, the national spread; with reports/index.html.",
        ),
        AssetSpec(
            OUTFLOW_REPORTS_KEY,
            deps=[SERVING_KEY],
            group_name="reports",
            kinds={"html", "pdf"},
            description="One outflow report per day-care provider (reports/outflow/<provider-slug>.html and "
            ".pdf): its latest year beside the year before.",
        ),
    ],  # fmt: skip
    name=REPORTS_STEP,
)
def feedback_reports(context: AssetExecutionContext, warehouse: WarehouseResource, reports: ReportsResource):
    paths = warehouse.paths()
    made = write_reports(paths.warehouse, paths.reports_dir, default_privacy(reports.min_count), reports.chromium)
    with warehouse.connect() as con:  # the set is published whole: this night's reports are done
        record_output(con, context.run_id, REPORTS_OUTPUT)
    context.log.info(made.line())
    common = {
        "index": MetadataValue.path(str(paths.reports_dir / "index.html")),
        "pdf": MetadataValue.text(f"{len(made.pdfs)} in the set" if made.pdf_problem is None else made.pdf_problem),
        "unchanged": made.unchanged,  # reports (HTML and PDF) taken over from the set before
        "not_made": MetadataValue.json(made.failed),
        "seconds": round(made.seconds, 2),
    }
    yield MaterializeResult(
        asset_key=IPS_REPORTS_KEY,
        metadata={**common, "files": _files(made.ips), "count": len(made.ips), REPORTS_LINE: made.line()},
    )
    yield MaterializeResult(
        asset_key=OUTFLOW_REPORTS_KEY, metadata={**common, "files": _files(made.outflow), "count": len(made.outflow)}
    )
