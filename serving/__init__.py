"""``quickdraw-serve``: an exported sketch classifier behind TF Serving's REST API,
with a drawing page at ``/`` (see ``serving.app``)."""
