"""The classes file has one reader (``tfrecord_schema.parse_classes``): the
trainer, the pipeline's ``--classes``, retraining and the mosaic read it with
the same rules, whatever filesystem the bytes come from."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import tfrecord_schema as schema

NAMES = st.lists(st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zs", "Zl", "Zp")),
                         min_size=1, max_size=12), min_size=1, max_size=20, unique=True)


@given(NAMES)
def test_what_the_pipeline_writes_reads_back_the_same(names):
    assert schema.parse_classes(schema.format_classes(names)) == names


@pytest.mark.parametrize("text,names", [
    ("cat\ndog\n", ["cat", "dog"]),
    ("cat\r\ndog\r\n", ["cat", "dog"]),
    ("cat\ndog", ["cat", "dog"]),
    (" cat \ndog\n\n\n", ["cat", "dog"]),
    ("The Eiffel Tower\n", ["The Eiffel Tower"]),
])
def test_line_ends_surrounding_blanks_and_trailing_blank_lines_are_accepted(text, names):
    assert schema.parse_classes(text.encode()) == names


@pytest.mark.parametrize("text,reason", [
    ("", "no class name"),
    ("\n\n", "no class name"),
    ("cat\n\ndog\n", "line 2 is blank"),
    ("cat\ndog\ncat\n", "line 3 names 'cat' again (first on line 1)"),
])
def test_a_file_that_would_shift_or_merge_indices_is_refused_with_its_line(text, reason):
    with pytest.raises(ValueError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        schema.parse_classes(text.encode())


def test_every_reader_applies_the_same_rules(tmp_path):
    from deploy.errors import RetrainError
    from deploy.version_dataset import read_classes as retrain_classes
    from pipeline.run import PipelineError
    from pipeline.options import read_classes as pipeline_classes
    from trainer.data import read_classes as trainer_classes
    from trainer.errors import TrainerError

    good, bad = tmp_path / "good.classes", tmp_path / "bad.classes"
    good.write_bytes(b"cat\r\n dog\n\n")
    bad.write_bytes(b"cat\n\ndog\n")
    readers = [(trainer_classes, TrainerError), (retrain_classes, RetrainError),
               (pipeline_classes, PipelineError)]
    for read, error in readers:
        assert read(str(good)) == ["cat", "dog"], read
        with pytest.raises(error, match="line 2 is blank"):
            read(str(bad))
