"""Stage 4 of the pipeline, ``WriteShards``: per (split, shard), a streaming
merge of its run-file sections into the final shard, written atomically;
then the small files (classes, stats) and the removal of the work folder."""
from __future__ import annotations

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

import tfrecord_schema as schema
from pipeline import split as split_lib
from pipeline import stats as stats_lib
from pipeline.atomic_files import created, tfrecord_frame, write_atomically
from pipeline.run_files import merged, write_run

# Sections merged at once: each open file holds a read buffer (16 MB on gs://).
FAN_IN = 32


class WriteShards(beam.PTransform):
    """Writes each (split, shard) as one TFRecord file, records in shuffled
    order, atomically; every expected shard exists even if empty."""

    def __init__(self, output: str, work_dir: str, quota: split_lib.Quota, shards: int):
        super().__init__()
        self._output = output
        self._work_dir = work_dir
        self._keys = quota.shard_keys(shards)
        self._shards = shards

    def expand(self, sections):
        empty = sections.pipeline | "ExpectedShards" >> beam.Create([(k, None) for k in self._keys])
        return (
            (sections, empty)
            | "Merge" >> beam.Flatten()
            | "GroupByShard" >> beam.GroupByKey()
            | "Write" >> beam.MapTuple(self._write))

    def _write(self, key, found):
        split, shard = key
        sections = sorted(s for s in found if s is not None)
        level = 0
        while len(sections) > FAN_IN:
            # Too many files to hold open at once: merge just enough of them
            # first that the rest fit in one merge.
            group = min(FAN_IN, len(sections) - FAN_IN + 1)
            path = FileSystems.join(self._work_dir, "merge-%s-%05d-%06d" % (split, shard, level))
            sections = sections[group:] + [write_run(path, merged(sections[:group]))]
            level += 1
        path = FileSystems.join(self._output, schema.shard_name(split, shard, self._shards))
        n = 0
        with created(path) as f:
            for _, record in merged(sections):
                f.write(tfrecord_frame(record))
                n += 1
        return split, path, n


class RemoveWorkFiles(beam.PTransform):
    """Deletes the temporary folder once every shard and the rejects file
    (which reads its part files there) are written."""

    def __init__(self, work_dir: str):
        super().__init__()
        self._work_dir = work_dir

    def expand(self, done):
        written, rejects = done
        return (
            written.pipeline
            | "Folder" >> beam.Create([self._work_dir])
            | "Delete" >> beam.Map(_delete_folder, beam.pvalue.AsList(written), beam.pvalue.AsList(rejects)))


def _delete_folder(folder: str, written, _) -> int:
    if FileSystems.exists(folder):
        FileSystems.delete([folder])
    return len(written)


class WriteClassFile(beam.PTransform):
    """``training.tfrecord.classes``: line number = class_index."""

    def __init__(self, output: str):
        super().__init__()
        self._path = FileSystems.join(output, schema.CLASSES_FILE)

    def expand(self, classes):
        return classes | "Write" >> beam.Map(
            lambda names: write_atomically(self._path, schema.format_classes(names)))


class WriteStats(beam.PTransform):
    """Sums the partial counts and writes ``stats.json``."""

    def __init__(self, output: str):
        super().__init__()
        self._path = FileSystems.join(output, schema.STATS_FILE)

    def expand(self, counts):
        return (
            counts
            | "Sum" >> beam.CombineGlobally(stats_lib.SumCounts())
            | "Build" >> beam.Map(stats_lib.build_stats)
            | "Write" >> beam.Map(self._write))

    def _write(self, stats):
        write_atomically(self._path, stats_lib.to_json(stats))
        return stats
