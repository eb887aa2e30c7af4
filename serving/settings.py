"""What a deployment of ``quickdraw-serve`` tunes: read by the request
checks (``serving.requests``) and the API (``serving.app``)."""
from __future__ import annotations

import dataclasses

import ndjson_format


@dataclasses.dataclass
class Settings:
    """What a deployment tunes (``quickdraw-serve --help`` explains each)."""
    model_name: str = "quickdraw"
    top_k: int = 5
    threshold: float = 0.5
    limits: ndjson_format.Limits = ndjson_format.Limits()
    max_body_bytes: int = 1_000_000
    max_instances: int = 64
    max_batch: int = 64
    batch_wait_ms: float = 1.0
    max_queue: int = 1024
