"""Installs the pipeline, trainer and deploy packages and their commands.

Dataflow workers install the project from this file (``--setup_file=./setup.py``).
"""
import setuptools

REQUIRED = [
    "tensorflow==2.21.0",
    "tensorflow-transform==1.21.0",
    "tfx-bsl==1.21.0",
    "apache-beam[gcp]==2.77.0",
    "numpy==2.4.6",
    "orjson==3.13.0",
    "pillow==12.3.0",
    "google-crc32c==1.9.0",
    "pyyaml>=6.0",
]

setuptools.setup(
    name="quickdraw-pipeline",
    version="0.1.0",
    description="Quick, Draw! data pipeline (Apache Beam, tf.Transform) and "
                "sketch-recognition trainer (TensorFlow 2).",
    python_requires=">=3.10,<3.13",
    packages=setuptools.find_packages(include=["pipeline", "pipeline.*",
                                               "trainer", "trainer.*",
                                               "deploy", "deploy.*"]),
    py_modules=["tfrecord_schema", "dataset_manifest"],
    include_package_data=True,
    install_requires=REQUIRED,
    entry_points={
        "console_scripts": [
            "quickdraw-pipeline=pipeline.run:main",
            "quickdraw-render=pipeline.render:main",
            "quickdraw-train=trainer.task:run",
            "quickdraw-predict=trainer.predict:main",
            "quickdraw-retrain=deploy.retrain:main",
        ],
    },
)
