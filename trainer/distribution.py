"""Choosing the tf.distribute strategy: one device, all local GPUs, or workers.

``auto`` follows the environment: several workers in ``TF_CONFIG`` (as
Vertex AI and Kubernetes set it) -> MultiWorkerMirroredStrategy, several local
GPUs -> MirroredStrategy, else one device.
"""
from __future__ import annotations

import json
import os

import tensorflow as tf

from trainer.errors import TrainerError
from trainer.names import DISTRIBUTIONS


def cluster_size() -> int:
    """Number of tasks (chief and workers) that train, according to TF_CONFIG."""
    try:
        config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    except ValueError as e:
        raise TrainerError("TF_CONFIG is not valid JSON: %s" % e) from e
    cluster = config.get("cluster", {})
    return len(cluster.get("chief", [])) + len(cluster.get("worker", []))


def make_strategy(name: str = "auto") -> tuple[str, tf.distribute.Strategy]:
    """The resolved ``--distribution`` name and its strategy; call before other TF work."""
    if name not in DISTRIBUTIONS:
        raise TrainerError("unknown --distribution %r (choose from %s)"
                           % (name, ", ".join(DISTRIBUTIONS)))
    if name == "auto":
        if cluster_size() > 1:
            name = "multi_worker"
        elif len(tf.config.list_physical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            name = "one_device"
    if name == "multi_worker":
        if cluster_size() < 1:
            raise TrainerError("--distribution=multi_worker needs TF_CONFIG with the cluster")
        return name, tf.distribute.MultiWorkerMirroredStrategy()
    if name == "mirrored":
        return name, tf.distribute.MirroredStrategy()
    # The default strategy: no replica machinery, ops placed on the GPU if any.
    return name, tf.distribute.get_strategy()


def task_identity(strategy: tf.distribute.Strategy) -> tuple[bool, int]:
    """(is this the chief, worker index) for the current process."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True, 0
    task_type, task_id = resolver.task_type, resolver.task_id or 0
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    is_chief = task_type == "chief" or (task_type == "worker" and task_id == 0 and not has_chief)
    return is_chief, task_id
