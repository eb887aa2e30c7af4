"""What README.md says about the repository itself: the pinned versions, the
seven commands `pip install -e .` puts on the path, and that every module
starts with a docstring."""
from __future__ import annotations

import ast
import re
import runpy

import setuptools

from sample_paths import REPO

COMMANDS = {"quickdraw-download": "pipeline.download", "quickdraw-pipeline": "pipeline.run",
            "quickdraw-render": "pipeline.render", "quickdraw-train": "trainer.task",
            "quickdraw-predict": "trainer.predict", "quickdraw-retrain": "deploy.retrain",
            "quickdraw-serve": "serving.server"}


def pins() -> dict[str, str]:
    found = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        m = re.match(r"^([\w.-]+)(?:\[\w+\])?==([\d.]+)", line.strip())
        if m:
            found[m.group(1)] = m.group(2)
    return found


def test_the_pinned_versions_are_those_the_docs_name():
    """README.md:42-43 (TensorFlow 2.21, tensorflow-transform 1.21, Apache Beam 2.77),
    docs/data.md:115 (Beam 2.77), docs/serving.md:246 (TensorFlow 2.21)."""
    p = pins()
    assert p["tensorflow"].startswith("2.21.")
    assert p["tensorflow-transform"].startswith("1.21.")
    assert p["apache-beam"].startswith("2.77.")


def test_the_seven_commands_are_installed():
    """README.md:43-45: `pip install -e .` puts these seven commands on the path."""
    seen = {}
    real = setuptools.setup
    try:
        setuptools.setup = lambda **kw: seen.update(kw)
        runpy.run_path(str(REPO / "setup.py"))
    finally:
        setuptools.setup = real
    scripts = dict(s.split("=", 1) for s in seen["entry_points"]["console_scripts"])
    assert {name: target.split(":")[0] for name, target in scripts.items()} == COMMANDS
    readme = (REPO / "README.md").read_text()
    listed = readme.split("puts the\ncommands", 1)[1].split("on the path", 1)[0]
    assert set(re.findall(r"`(quickdraw-\w+)`", listed)) == set(COMMANDS)


def test_every_module_starts_with_a_docstring():
    """README.md:513: one module per idea; each starts with a docstring."""
    modules = [p for d in ("", "pipeline", "trainer", "serving", "deploy") for p in (REPO / d).glob("*.py")
               if p.name not in ("__init__.py", "setup.py")]
    assert len(modules) > 50
    missing = [str(p.relative_to(REPO)) for p in modules
               if not (ast.get_docstring(ast.parse(p.read_text())) or "").strip()]
    assert not missing, missing
