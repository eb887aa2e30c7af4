"""Shared checks for the deploy tests: flags against the real parsers, the
sources of Dockerfile COPYs, and the commands the launch scripts print."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
SAMPLE = REPO / "data" / "sample"

# The ${...} placeholders of the specs, filled as `envsubst` would.
PLACEHOLDERS = {
    "TRAINER_IMAGE": "us-central1-docker.pkg.dev/p/quickdraw/trainer:1",
    "DATA_DIR": "gs://b/quickdraw/registry/datasets/20260101-000000",
    "MODEL_DIR": "gs://b/quickdraw/models/run1",
    "REGISTRY": "gs://b/quickdraw/registry",
    "PROJECT": "p",
    "REGION": "us-central1",
    "BUCKET": "gs://b",
}


def substitute(text: str) -> str:
    """``text`` with ``${NAME}`` replaced; fails on a placeholder not known."""
    def value(match: re.Match) -> str:
        name = match.group(1)
        assert name in PLACEHOLDERS, "undocumented placeholder ${%s}" % name
        return PLACEHOLDERS[name]
    return re.sub(r"\$\{(\w+)\}", value, text)


def flag_name(flag: str) -> str:
    return flag.split("=", 1)[0]


def pipeline_parser():
    """Every flag the pipeline accepts: Beam's options and QuickDrawOptions."""
    from pipeline.options import beam_parser
    return beam_parser()


def unknown_pipeline_flags(flags: list[str]) -> list[str]:
    """Flags the pipeline would discard; values are type-checked by argparse."""
    _, unknown = pipeline_parser().parse_known_args(flags)
    return unknown


def unknown_trainer_flags(flags: list[str]) -> list[str]:
    from trainer.task import build_parser
    parser = build_parser()
    unknown = [f for f in flags
               if flag_name(f) not in parser._option_string_actions]
    known = [f for f in flags if f not in unknown]
    for flag in known:  # each value must parse (type, choices)
        action = parser._option_string_actions[flag_name(flag)]
        if "=" in flag and action.type is not None:
            action.type(flag.split("=", 1)[1])
        if "=" in flag and action.choices is not None:
            assert flag.split("=", 1)[1] in action.choices, flag
    return unknown


def unknown_retrain_flags(flags: list[str]) -> list[str]:
    from deploy.retrain import build_parser
    parser = build_parser()
    _, unknown = parser.parse_known_args(flags)
    return unknown


def check_retrain_args(args: list[str]) -> None:
    """Retrain flags, and the pipeline and trainer flags nested in them."""
    from deploy.retrain import build_parser
    assert unknown_retrain_flags(args) == []
    parsed = build_parser().parse_args(args)
    assert unknown_pipeline_flags(shlex.split(parsed.pipeline_flags)) == []
    assert unknown_trainer_flags(shlex.split(parsed.trainer_flags)) == []


def dockerfile_copy_sources(dockerfile: Path) -> list[str]:
    """Sources of the COPY instructions that read the build context."""
    sources = []
    for line in dockerfile.read_text().splitlines():
        words = line.split()
        if not words or words[0].upper() not in ("COPY", "ADD"):
            continue
        words = words[1:]
        if any(w.startswith("--from") for w in words):
            continue
        words = [w for w in words if not w.startswith("--")]
        sources.extend(words[:-1])
    return sources


def dockerfile_base_images(dockerfile: Path) -> list[str]:
    """FROM images with their ARG defaults filled in."""
    text = dockerfile.read_text()
    defaults = dict(re.findall(r"^ARG (\w+)=(\S+)", text, re.M))
    images = []
    for image in re.findall(r"^FROM\s+(\S+)", text, re.M):
        images.append(re.sub(r"\$\{(\w+)\}", lambda m: defaults[m.group(1)],
                             image))
    return images


def dry_run(script: Path, *args: str, env: dict | None = None) -> list[list[str]]:
    """The commands a launch script would run (it prints them with DRY_RUN=1)."""
    full_env = dict(os.environ, DRY_RUN="1", **(env or {}))
    out = subprocess.run(["bash", str(script), *args], env=full_env,
                         capture_output=True, text=True, check=True,
                         timeout=60)
    return [shlex.split(line) for line in out.stdout.splitlines() if line]


def module_flags(command: list[str], module: str) -> list[str]:
    """The flags after ``python -m module`` in a command line."""
    if "-m" in command and command[command.index("-m") + 1] == module:
        return command[command.index("-m") + 2:]
    return []
