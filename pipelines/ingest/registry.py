"""The source registry: inbound contracts and the sources that map files onto them.

A *contract* (``pipelines/ingest/contracts/*.yaml``) names the columns, types and rules of one kind of
inbound data and the raw table it lands in. A *source* (``pipelines/ingest/sources/*.yaml``, plus any
folder named by ``CARE_OUTCOMES_SOURCES_DIR``) says how one care system's or form's files look:
folder, file patterns, format, delimiter, encoding, decimal mark, date format, header mapping and
value mapping. Adding a care system is adding a source YAML; no Python changes.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pipelines.warehouse import PROJECT_ROOT

PACKAGE_DIR = Path(__file__).resolve().parent
CONTRACTS_DIR = PACKAGE_DIR / "contracts"
SOURCES_DIR = PACKAGE_DIR / "sources"

ColumnType = Literal["text", "integer", "decimal", "date", "timestamp"]


class RegistryError(Exception):
    """A contract or source YAML that cannot be used; the message says which file and why."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ContractColumn(_Strict):
    name: str
    type: ColumnType
    required: bool = False
    optional_column: bool = Field(False, description="the file may leave the column out altogether")
    min: float | None = None
    max: float | None = None
    not_after_current_year: bool = False
    max_length: int | None = Field(None, ge=1, description="text: the most characters a value may have")
    values: tuple[str, ...] | None = Field(None, description="the accepted codes")
    values_from: str | None = Field(
        None,
        description="<reference>.<column>: the accepted codes are that column of a reference CSV (e.g. a dbt seed)",
    )
    description: str | None = None


class ContractRule(_Strict):
    name: str
    check: str = Field(description="SQL predicate over the typed columns; rows where it is false are rejected")


class Contract(_Strict):
    name: str
    description: str
    key: tuple[str, ...]
    key_repeats: Literal["when_different", "never"] = Field(
        "when_different",
        description="when_different: identical repeated rows are tolerated; never: any repeat of a key is rejected",
    )
    columns: tuple[ContractColumn, ...]
    rules: tuple[ContractRule, ...] = ()
    pseudonymise: tuple[str, ...] = ()
    references: dict[str, str] = Field(
        default_factory=dict,
        description="name -> CSV path relative to the project root; rules can query it as table ref_<name>",
    )

    @property
    def raw_table(self) -> str:
        return self.name

    def column(self, name: str) -> ContractColumn:
        return next(c for c in self.columns if c.name == name)

    @model_validator(mode="after")
    def _keys_are_columns(self) -> Contract:
        names = {c.name for c in self.columns}
        unknown = [k for k in (*self.key, *self.pseudonymise) if k not in names]
        if unknown:
            raise ValueError(f"key/pseudonymise name unknown columns: {unknown}")
        return self


class Source(_Strict):
    name: str
    contract: str
    folder: str
    patterns: tuple[str, ...] = ("*.csv", "*.xlsx")
    format: Literal["auto", "csv", "xlsx"] = "auto"
    delimiter: str = ","
    encoding: Literal["auto", "utf-8", "cp1252", "latin-1"] = "auto"
    decimal: Literal[".", ","] = "."
    date_format: str = "%Y-%m-%d"
    sheet: str | None = None
    header_row: int = Field(1, ge=1, description="spreadsheet row number of the header")
    columns: dict[str, str] = Field(default_factory=dict, description="file header -> contract column")
    values: dict[str, dict[str, str]] = Field(default_factory=dict, description="contract column -> {file label: code}")
    ignore_columns: tuple[str, ...] = ()
    null_values: tuple[str, ...] = Field((), description="cell texts that mean 'empty', e.g. nvt (case-insensitive)")
    file_name_pattern: str | None = Field(
        None, description="regular expression with named groups giving contract columns from the file name"
    )
    description: str | None = None
    path: str | None = Field(None, description="the YAML file this source came from")


class Registry(_Strict):
    contracts: dict[str, Contract]
    sources: dict[str, Source]

    def sources_for(self, contract: str) -> list[Source]:
        return [s for s in self.sources.values() if s.contract == contract]


def read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise RegistryError(f"{path}:{where} is not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise RegistryError(f"{path}: expected a mapping of settings, found {type(data).__name__}")
    return data


def _build(model: type[BaseModel], path: Path, data: dict):
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}" for err in exc.errors())
        raise RegistryError(f"{path}: {problems}") from None


def _reference_values(data: dict, path: Path) -> dict:
    """Fill ``values`` of every column with ``values_from`` from its reference CSV, so the codes have one home."""
    references = data.get("references") or {}
    columns = []
    for column in data.get("columns") or []:
        if isinstance(column, dict) and column.get("values_from"):
            reference, _, name = str(column["values_from"]).partition(".")
            if reference not in references:
                raise RegistryError(
                    f"{path}: column '{column.get('name')}' takes its values from unknown reference '{reference}'"
                )
            with (PROJECT_ROOT / references[reference]).open(encoding="utf-8", newline="") as fh:
                rows = list(csv.DictReader(fh))
            if not rows or name not in rows[0]:
                raise RegistryError(f"{path}: reference '{reference}' has no column '{name}'")
            column = {**column, "values": [row[name] for row in rows]}
        columns.append(column)
    return {**data, "columns": columns}


def _load_contract(path: Path) -> Contract:
    data = read_yaml(path)
    for name, csv_path in (data.get("references") or {}).items():
        if not (PROJECT_ROOT / csv_path).is_file():
            raise RegistryError(f"{path}: reference '{name}' points to {csv_path}, which does not exist")
    contract = _build(Contract, path, _reference_values(data, path))
    _check_bounds(contract, path)
    return contract


INT32 = 2**31 - 1


MAX_TEXT = 10_000  # the longest text a contract may allow: a cell, not a document


def _check_bounds(contract: Contract, path: Path) -> None:
    """Every number has a minimum and a maximum the marts can hold, and every text a maximum length, so nothing that
    passes ingest breaks the build or fills the marts and the reports with a document where a name belongs."""
    for column in contract.columns:
        if column.type == "text" and (column.max_length is None or column.max_length > MAX_TEXT):
            raise RegistryError(f"{path}: text column '{column.name}' needs max_length (at most {MAX_TEXT:,})")
        if column.type in ("integer", "decimal") and (
            column.min is None or column.max is None or max(abs(column.min), abs(column.max)) > INT32
        ):
            raise RegistryError(f"{path}: column '{column.name}' needs min and max within +-{INT32}")


def _check_source(source: Source, contracts: dict[str, Contract], path: Path) -> None:
    contract = contracts.get(source.contract)
    if contract is None:
        raise RegistryError(f"{path}: contract '{source.contract}' does not exist (known: {sorted(contracts)})")
    names = {c.name for c in contract.columns}
    for header, column in source.columns.items():
        if column not in names:
            raise RegistryError(
                f"{path}: header '{header}' maps to unknown column '{column}' of contract '{contract.name}'"
            )
    for column in source.values:
        if column not in names:
            raise RegistryError(f"{path}: value mapping for unknown column '{column}' of contract '{contract.name}'")
    if source.file_name_pattern is not None:
        try:
            groups = re.compile(source.file_name_pattern).groupindex
        except re.error as exc:
            raise RegistryError(f"{path}: file_name_pattern is not a valid regular expression: {exc}") from None
        unknown = [g for g in groups if g not in names]
        if unknown or not groups:
            raise RegistryError(
                f"{path}: file_name_pattern needs named groups that are contract columns (unknown: {unknown})"
            )
    if len(source.delimiter) != 1:
        raise RegistryError(f"{path}: delimiter must be one character, got {source.delimiter!r}")


def load_registry(extra_dirs: tuple[Path, ...] = ()) -> Registry:
    """Read and validate every contract and the sources of the built-in folder and ``extra_dirs``
    (CARE_OUTCOMES_SOURCES_DIR); raise RegistryError naming the broken file."""
    contracts = {c.name: c for c in map(_load_contract, sorted(CONTRACTS_DIR.glob("*.yaml")))}
    sources: dict[str, Source] = {}
    folders: dict[str, Path] = {}
    for directory in [SOURCES_DIR, *extra_dirs]:
        if not directory.is_dir():
            raise RegistryError(f"{directory}: sources folder does not exist")
        for path in sorted(directory.glob("*.y*ml")):
            data = read_yaml(path)
            source = _build(Source, path, {**data, "path": str(path)})
            _check_source(source, contracts, path)
            if source.name in sources:
                raise RegistryError(
                    f"{path}: source name '{source.name}' is already used by {sources[source.name].path}"
                )
            if source.folder in folders:
                raise RegistryError(f"{path}: folder '{source.folder}' is already read by {folders[source.folder]}")
            sources[source.name] = source
            folders[source.folder] = path
    return Registry(contracts=contracts, sources=sources)
