"""One place for the pinned versions: setup.py installs what requirements.txt pins."""
from __future__ import annotations

import runpy
from pathlib import Path

import setuptools

ROOT = Path(__file__).resolve().parent.parent


def _setup_kwargs(monkeypatch) -> dict:
    seen = {}
    monkeypatch.setattr(setuptools, "setup", lambda **kw: seen.update(kw))
    runpy.run_path(str(ROOT / "setup.py"))
    return seen


def test_install_requires_are_the_pins_of_requirements_txt_without_test_tools(monkeypatch):
    pins = [l.split("#")[0].strip() for l in (ROOT / "requirements.txt").read_text().splitlines()]
    pins = [p for p in pins if p]
    required = _setup_kwargs(monkeypatch)["install_requires"]
    assert required == [p for p in pins if not p.startswith(("pytest", "hypothesis"))]
    assert any(p.startswith("pytest") for p in pins) and "apache-beam[gcp]==2.77.0" in required


def test_sdist_carries_requirements_txt_for_dataflow_setup_file(monkeypatch):
    assert "include requirements.txt" in (ROOT / "MANIFEST.in").read_text().splitlines()
    assert "dataset_manifest" in _setup_kwargs(monkeypatch)["py_modules"]
