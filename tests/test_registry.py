"""The source registry: built-ins load, and a broken YAML gets a message naming the file and the fault."""

from __future__ import annotations

import pytest

from pipelines.ingest.registry import RegistryError, load_registry


def test_builtin_registry_loads():
    registry = load_registry(extra_dirs=())
    assert "ips_quarterly" in registry.contracts
    assert {s.folder for s in registry.sources_for("ips_quarterly")} >= {"ips_quarterly", "ips_quarterly_formulier"}


@pytest.mark.parametrize(
    "text, expected",
    [
        ("name: x\ncontract: ips_quarterly\nfolder: [unclosed\n", "is not valid YAML"),
        ("name: x\ncontract: nope\nfolder: x\n", "contract 'nope' does not exist"),
        ("name: x\ncontract: ips_quarterly\nfolder: x\ncolumns:\n  Aantal: casload\n", "unknown column 'casload'"),
        ("name: x\ncontract: ips_quarterly\nfolder: x\nformat: pdf\n", "format"),
        ("name: x\ncontract: ips_quarterly\nfolder: x\nsurprise: 1\n", "surprise"),
        ("name: x\ncontract: ips_quarterly\nfolder: ips_quarterly\n", "folder 'ips_quarterly' is already read"),
        ("- just\n- a list\n", "expected a mapping"),
    ],
)
def test_broken_source_yaml_is_named_and_explained(tmp_path, text, expected):
    (tmp_path / "broken.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(RegistryError) as info:
        load_registry(extra_dirs=(tmp_path,))
    assert "broken.yaml" in str(info.value) and expected in str(info.value)
