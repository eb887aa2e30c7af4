"""The docs' option tables are claims: the default each row gives is the
default the command's own parser has (README's pipeline table, docs/data.md's
download table, docs/trainer.md's flag table, docs/serving.md's connection
table), and the serving defaults docs/serving.md states in its text."""
from __future__ import annotations

import re

import pytest

from sample_paths import REPO

# How a table writes "no default": the parser's None or False.
NOTHING = {"", "off", "none", "false", "required"}


def table_rows(doc: str, after: str) -> dict[str, str]:
    """{flag: default cell} of the first table of flags that follows ``after``."""
    text = (REPO / doc).read_text(encoding="utf-8").split(after, 1)[1]
    rows = {}
    for line in text.splitlines():
        if rows and not line.startswith("|"):
            break
        m = re.match(r"\| `(--\w+)`(?: \(alias `--\w+`\))? \|\s*([^|]*?)\s*\|", line)
        if m:
            rows[m.group(1)] = m.group(2).strip()
    assert rows, "no flag table after %r in %s" % (after, doc)
    return rows


def defaults(parser) -> dict[str, object]:
    return {o: a.default for a in parser._actions for o in a.option_strings if o.startswith("--")}


def same(cell: str, value: object) -> bool:
    """Whether a table's default cell says ``value``."""
    cell = cell.strip("`")
    if value is None or value is False:
        return cell.lower() in NOTHING
    if value is True:
        return cell.lower() in ("true", "on")
    if isinstance(value, list):
        return cell == ",".join(str(v) for v in value)
    if isinstance(value, (int, float)):
        number = re.match(r"^([\d.]+)(?: s)?$", cell)
        return bool(number) and float(number.group(1)) == float(value)
    return cell == str(value)


def check_table(rows: dict[str, str], parser_defaults: dict[str, object], special=None):
    special = special or {}
    wrong = {}
    for flag, cell in rows.items():
        assert flag in parser_defaults, "the table shows %s, which the command does not know" % flag
        expected = special.get(flag, parser_defaults[flag])
        if not same(cell, expected):
            wrong[flag] = (cell, expected)
    assert not wrong, "table default != parser default: %s" % wrong


def test_readme_pipeline_options_table_gives_the_parsers_defaults():
    """README.md 'Options' table (lines 216-230)."""
    from pipeline import options
    rows = table_rows("README.md", "### Options")
    assert len(rows) == 13
    # --input: None in the parser, the bundled sample when absent; the counts:
    # None in the parser, then the tutorial's or the sample's (checked below).
    special = {"--input": "data/sample", "--classes": "all",
               "--train_observations_per_class": "10000 (20 with no `--input`)",
               "--eval_observations_per_class": "1000 (5 with no `--input`)"}
    check_table({f: c for f, c in rows.items() if f not in special},
                defaults(options.help_parser()))
    for flag, cell in special.items():
        assert rows[flag] == ("`%s`" % cell if flag == "--input" else cell), flag
    assert defaults(options.help_parser())["--classes"] is None  # every class found
    assert options.TUTORIAL_COUNTS == {"train_observations_per_class": 10000,
                                       "eval_observations_per_class": 1000}
    assert options.SAMPLE_COUNTS == {"train_observations_per_class": 20,
                                     "eval_observations_per_class": 5}


def test_pipeline_input_default_is_the_bundled_sample():
    """README.md:218: `--input` defaults to `data/sample`."""
    from pipeline import inputs
    assert inputs.SAMPLE_DIR == str(REPO / "data" / "sample")


def test_download_options_table_gives_the_parsers_defaults():
    """docs/data.md 'option | default' table (lines 19-30)."""
    from pipeline import download
    rows = table_rows("docs/data.md", "| option | default | meaning |")
    assert len(rows) == 10
    check_table(rows, defaults(download.build_parser()))


def test_trainer_flag_table_gives_the_parsers_defaults():
    """docs/trainer.md flag table (lines 110-153)."""
    from trainer import task
    rows = table_rows("docs/trainer.md", "## Flags")
    assert len(rows) == 44
    check_table({f: c for f, c in rows.items() if f not in ("--export_dir", "--length_stats", "--eval_steps")},
                defaults(task.build_parser()))
    # Defaults the table says in words, the parser as None (worked out later).
    parser_defaults = defaults(task.build_parser())
    for flag, cell in (("--export_dir", "`<model_dir>/export`"), ("--length_stats", "beside the training data"),
                       ("--eval_steps", "whole set")):
        assert rows[flag] == cell and parser_defaults[flag] is None, flag
    required = {o for a in task.build_parser()._actions if a.required for o in a.option_strings}
    assert required == {f for f, c in rows.items() if c == "required"}


def test_serving_connection_table_gives_the_parsers_defaults():
    """docs/serving.md connection limits table (lines 128-134)."""
    from serving import server
    rows = table_rows("docs/serving.md", "| flag | default | past it |")
    assert len(rows) == 5
    check_table(rows, defaults(server.build_parser()))


def test_serving_defaults_stated_in_the_text():
    """docs/serving.md:12 (127.0.0.1:8501), :66 (--max_points 10,000, --max_strokes
    none), :70-71 (--max_body_bytes 1 MB), :75 (--max_instances 64), :86-87
    (--max_batch 64, --batch_wait_ms 1 ms)."""
    from serving import server
    d = defaults(server.build_parser())
    assert d["--host"] == "127.0.0.1" and d["--port"] == 8501
    assert d["--max_points"] == 10_000 and d["--max_strokes"] == 0  # 0: no cap
    import ndjson_format
    many = [[[i, i + 1], [0, 1]] for i in range(5000)]
    limits = ndjson_format.Limits(max_points=0, max_strokes=d["--max_strokes"])
    assert not isinstance(ndjson_format.check_strokes(many, limits), ndjson_format.Reject)
    assert d["--max_body_bytes"] == 1_000_000
    assert d["--max_instances"] == 64
    assert d["--max_batch"] == 64 and d["--batch_wait_ms"] == 1.0


@pytest.mark.parametrize("cell, value, says", [
    ("10", 10, True), ("10", 11, False), ("5 s", 5.0, True), ("off", False, True), ("off", 0, False),
    ("48,64,96", [48, 64, 96], True), ("48,64,96", [48, 64], False), ("`simplified`", "simplified", True),
    ("true", True, True), ("false", True, False), ("none", None, True), ("3", None, False)])
def test_the_cell_reader_tells_a_wrong_default(cell, value, says):
    assert same(cell, value) is says
