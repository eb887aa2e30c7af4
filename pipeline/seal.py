"""The dataset's last step: once every output is written, check that it is
the dataset asked for and write its manifest (``dataset_manifest``)."""
from __future__ import annotations

import json

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

import dataset_manifest
import tfrecord_schema as schema
from pipeline import output_folder
from pipeline.options import quote_names


def dataset_problem(stats: dict, classes: list[str] | None) -> str | None:
    """Why a finished job's output is not the dataset asked for, if it is not."""
    if not sum(stats["totals"]["selected"].values()):
        return "no drawing was selected: see %s and the rejects" % schema.STATS_FILE
    absent = [c for c in classes or () if not sum(stats["classes"].get(c, {}).get("selected", {}).values())]
    if absent:
        return "--classes: %s not in the input (no valid drawing of %s); see %s" % (
            quote_names(absent), "it" if len(absent) == 1 else "them", schema.STATS_FILE)
    return None


def read_stats(output: str) -> dict:
    with FileSystems.open(FileSystems.join(output, schema.STATS_FILE)) as f:
        return json.loads(f.read())


def seal(_, output: str, classes: list[str] | None, fields: dict, *finished) -> bool:
    """The job's last step, once every output is written: removes the
    temporary files left (the transform's folder, and what an attempt that
    failed in the middle of a write left: its retry wrote the file again under
    another temporary name) and writes manifest.json, unless the dataset is not
    the one asked for. Run by the job itself, so that a job whose launcher does
    not wait for it (a Flex Template launch) is sealed too."""
    output_folder.remove_temporary(output)
    stats = read_stats(output)
    if dataset_problem(stats, classes):
        return False
    counts = dict(stats["totals"], classes=len(stats["classes"]))
    dataset_manifest.write_manifest(output, dict(fields, counts=counts))
    return True


class SealDataset(beam.PTransform):
    """Writes the manifest once all of ``finished`` (the writing steps' outputs)
    is computed: they are side inputs of a single element."""

    def __init__(self, output: str, classes: list[str] | None, fields: dict):
        super().__init__()
        self._args = (output, classes, fields)

    def expand(self, finished):
        waits = [beam.pvalue.AsList(pc) for pc in finished]
        return (finished[0].pipeline | "Once" >> beam.Create([None])
                | "WriteManifest" >> beam.Map(seal, *self._args, *waits))
