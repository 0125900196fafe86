"""The package under test is the installed wheel, complete (run by test.sh)."""

from __future__ import annotations

import os
import re
from importlib import metadata
from pathlib import Path

import pytest

import phasecast

HERE = Path(__file__).resolve().parent.parent

installed_only = pytest.mark.skipif(
    os.environ.get("PHASECAST_TEST_INSTALLED") != "1",
    reason="checks the wheel test.sh installs (PHASECAST_TEST_INSTALLED=1)",
)


@installed_only
def test_phasecast_is_imported_from_the_installed_wheel() -> None:
    location = Path(phasecast.__file__).resolve()
    assert HERE / "src" not in location.parents, location
    assert "site-packages" in location.parts
    package = location.parent
    for name in ("py.typed", "_pb/pcc/v1/pcc_pb2.py", "_pb/pcc/v1/pcc_pb2.pyi"):
        assert (package / name).is_file(), name


@installed_only
def test_the_wheel_declares_its_dependencies_and_extras() -> None:
    meta = metadata.metadata("phasecast")
    assert meta["Version"] == phasecast.__version__
    requires = metadata.requires("phasecast") or []
    names = {re.split(r"[ <>=;\[]", r, maxsplit=1)[0].lower(): r for r in requires}
    for name in ("websockets", "protobuf", "httpx"):
        assert name in names and "extra" not in names[name], requires
    assert 'extra == "numpy"' in names["numpy"]
    assert set(meta.get_all("Provides-Extra") or []) >= {"numpy", "test"}


def test_the_version_is_the_projects() -> None:
    pyproject = (HERE / "pyproject.toml").read_text()
    match = re.search(r'^version = "([^"]+)"', pyproject, flags=re.M)
    assert match is not None and match.group(1) == phasecast.__version__
