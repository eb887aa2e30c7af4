"""Entry point of the Dataflow Flex Template.

The template launcher runs this file as a script with the template's
parameters as ``--name=value`` flags.
"""
from __future__ import annotations

import logging
import sys

# The pipeline's on/off switches; a template parameter always has a value.
SWITCHES = ("--recognized_only", "--raster", "--skip_transform")


def template_argv(argv: list[str]) -> list[str]:
    """``--raster=true`` -> ``--raster``, ``--raster=false`` -> nothing."""
    out = []
    for arg in argv:
        name, _, value = arg.partition("=")
        if name in SWITCHES and value:
            if value.lower() not in ("true", "false"):
                raise SystemExit("error: %s takes true or false, not %r" % (name, value))
            if value.lower() == "true":
                out.append(name)
        else:
            out.append(arg)
    return out


if __name__ == "__main__":
    from pipeline.run import main
    logging.getLogger().setLevel(logging.INFO)
    sys.exit(main(template_argv(sys.argv[1:])))
