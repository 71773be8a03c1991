"""The distribution installs every package folder, under the brokerflow namespace only."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_package_folder_is_listed() -> None:
    setuptools = _pyproject()["tool"]["setuptools"]
    mapping = setuptools["package-dir"]
    on_disk = set()
    for package, folder in mapping.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder)
            on_disk.add(".".join([package, *relative.parts]))
    assert on_disk == set(setuptools["packages"])


def test_no_bare_top_level_packages_are_installed() -> None:
    packages = _pyproject()["tool"]["setuptools"]["packages"]
    assert all(name == "brokerflow" or name.startswith("brokerflow.") for name in packages)


def test_mapped_folders_import_under_the_namespace() -> None:
    import brokerflow.agents
    import brokerflow.connectors
    import brokerflow.flows
    import brokerflow.tables

    for module, folder in [
        (brokerflow.agents, "agents"),
        (brokerflow.tables, "tables"),
        (brokerflow.flows, "flows"),
        (brokerflow.connectors, "connectors"),
    ]:
        assert Path(module.__file__).parent == ROOT / folder
    assert Path(brokerflow.__file__).parent == ROOT / "src" / "brokerflow"
