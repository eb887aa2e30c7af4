"""The docs' commands and paths are claims too: every command they show
uses flags its command knows, and every repository path they name exists."""
from __future__ import annotations

import re
import shlex

import pytest

import command_line
from sample_paths import REPO

DOCS = [REPO / "README.md"] + sorted((REPO / "docs").glob("*.md"))
SCRIPTS = {"quickdraw-pipeline": "pipeline.run", "quickdraw-render": "pipeline.render",
           "quickdraw-train": "trainer.task", "quickdraw-predict": "trainer.predict",
           "quickdraw-serve": "serving.server", "quickdraw-retrain": "deploy.retrain",
           "quickdraw-download": "pipeline.download"}


def known_options(module: str) -> list[str]:
    """Every option the command accepts, from its own parser."""
    if module == "pipeline.run":
        from pipeline.options import beam_parser
        parser = beam_parser()
        return [o for a in parser._actions for o in a.option_strings] + ["--help", "--help_beam"]
    parser = __import__(module, fromlist=["build_parser"]).build_parser()
    return [o for a in parser._actions for o in a.option_strings]


def shell_commands(text: str) -> list[list[str]]:
    """The commands of the docs' ``sh`` blocks, continuation lines joined."""
    commands = []
    for block in re.findall(r"```(?:sh|bash|shell)\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].strip()
            if line and not line.startswith("#"):
                try:
                    commands.append(shlex.split(line, comments=True))
                except ValueError:
                    continue
    return commands


def our_invocations():
    """(doc, module, flags) for each of this project's commands the docs show."""
    found = []
    for doc in DOCS:
        for words in shell_commands(doc.read_text()):
            for i, word in enumerate(words):
                name = word.rsplit("/", 1)[-1]
                if name in SCRIPTS:
                    found.append((doc.name, SCRIPTS[name], words[i + 1:]))
                elif word == "-m" and i + 1 < len(words) and words[i + 1] in SCRIPTS.values():
                    found.append((doc.name, words[i + 1], words[i + 2:]))
    # quickdraw-retrain passes flags on to the pipeline and the trainer
    for doc, module, flags in list(found):
        for flag in flags if module == "deploy.retrain" else []:
            name, _, value = flag.partition("=")
            inner = {"--pipeline_flags": "pipeline.run", "--trainer_flags": "trainer.task"}.get(name)
            if inner:
                found.append((doc, inner, shlex.split(value)))
    return found


INVOCATIONS = our_invocations()


def test_the_docs_show_the_commands():
    shown = {module for _, module, _ in INVOCATIONS}
    assert {"pipeline.run", "trainer.task", "serving.server"} <= shown, shown


@pytest.mark.parametrize("doc,module,flags", INVOCATIONS,
                         ids=["%s:%s" % (d, m) for d, m, _ in INVOCATIONS])
def test_every_flag_the_docs_show_is_known_to_its_command(doc, module, flags):
    flags = [f for f in flags if not f.startswith("$")]
    cut = next((i for i, f in enumerate(flags) if f in ("|", "&&", ";", ">", "2>&1")), len(flags))
    unknown = command_line.unknown_options(flags[:cut], known_options(module))
    assert not unknown, "%s shows %s with %s, which it does not know" % (doc, module, unknown)


PATH = re.compile(r"`((?:pipeline|trainer|serving|deploy|tests|benchmarks|scripts|docs|data)/"
                  r"[\w./-]+\.(?:py|md|sh|json|yaml|yml|png|ndjson))`")


@pytest.mark.parametrize("doc", DOCS, ids=[d.name for d in DOCS])
def test_every_repository_path_the_docs_name_exists(doc):
    missing = sorted({p for p in PATH.findall(doc.read_text()) if "*" not in p
                      and not (REPO / p).exists()})
    assert not missing, "%s names files that do not exist: %s" % (doc.name, missing)


def test_the_readme_module_map_names_every_module_as_it_is():
    """README's "Where things are" names each module of the project, and only those."""
    text = (REPO / "README.md").read_text()
    table = text.split("## Where things are", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`([\w/]+\.py)`", table))
    modules = {p.relative_to(REPO).as_posix() for d in ("", "pipeline/", "trainer/", "serving/", "deploy/")
               for p in (REPO / d).glob("*.py") if p.name not in ("__init__.py", "setup.py")}
    assert named == modules, ("missing: %s; gone: %s" % (sorted(modules - named), sorted(named - modules)))


def test_the_trainer_docs_module_table_names_every_trainer_module():
    """docs/trainer.md's module table names each module of ``trainer/``, and only those."""
    table = (REPO / "docs" / "trainer.md").read_text().split("| Module |", 1)[1].split("\n\n", 1)[0]
    named = set(re.findall(r"`(trainer/\w+\.py)`", table))
    modules = {"trainer/" + p.name for p in (REPO / "trainer").glob("*.py") if p.name != "__init__.py"}
    assert named == modules, ("missing: %s; gone: %s" % (sorted(modules - named), sorted(named - modules)))


def test_the_trainer_imports_nothing_of_the_pipeline():
    """docs/trainer.md: the trainer does not import ``pipeline/``; the two share
    the on-disk format and the readers' checks through top-level modules."""
    import ast
    found = []
    for path in sorted((REPO / "trainer").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            found += ["%s: %s" % (path.name, n) for n in names if n.split(".")[0] == "pipeline"]
    assert found == []
