"""Entry point of the Dataflow Flex Template.

The template launcher runs this file as a script with the template's
parameters as flags. It lives outside ``pipeline/`` because a script's own
directory goes first on ``sys.path``, where ``pipeline/io.py`` would shadow the
standard library's ``io``.
"""
import logging
import sys

from pipeline.run import main

if __name__ == "__main__":
    logging.getLogger().setLevel(logging.INFO)
    sys.exit(main())
