"""The exported SavedModel as the server uses it: batches of validated points in,
class probabilities out, plus what the metadata endpoint describes."""
from __future__ import annotations

import numpy as np

TF_DTYPES = {"float32": "DT_FLOAT", "int32": "DT_INT32", "int64": "DT_INT64",
             "string": "DT_STRING", "float64": "DT_DOUBLE"}


def _tensor_info(spec) -> dict:
    dims = [{"size": str(-1 if d is None else d)} for d in spec.shape.as_list()]
    return {"dtype": TF_DTYPES.get(spec.dtype.name, spec.dtype.name),
            "tensor_shape": {"dim": dims}, "name": spec.name}


def signature_defs(loaded) -> dict:
    """The export's signatures as TF Serving's metadata API lists them."""
    defs = {}
    for name, fn in loaded.signatures.items():
        inputs = fn.structured_input_signature[1]
        outputs = fn.structured_outputs
        defs[name] = {
            "inputs": {k: _tensor_info(v) for k, v in sorted(inputs.items())},
            "outputs": {k: {"dtype": TF_DTYPES.get(v.dtype.name, v.dtype.name),
                            "tensor_shape": {"dim": [{"size": str(-1 if d is None else d)}
                                                     for d in v.shape.as_list()]},
                            "name": k}
                        for k, v in sorted(outputs.items())},
            "method_name": "tensorflow/serving/predict",
        }
    return defs


class ServedModel:
    """An export loaded once; ``probabilities`` is called from one thread at a time."""

    def __init__(self, export_dir: str):
        import tensorflow as tf

        from trainer.export import RAW_SIGNATURE, TRAINER_PREPROCESSING, load_export
        self._tf = tf
        loaded, self.classes = load_export(export_dir)
        self._loaded = loaded
        self._serve = loaded.signatures[RAW_SIGNATURE]
        self.version = int(loaded.global_step.numpy())
        self.preprocessing = (loaded.preprocessing.numpy().decode("utf-8")
                              if hasattr(loaded, "preprocessing") else TRAINER_PREPROCESSING)
        self.signature_defs = signature_defs(loaded)

    def probabilities(self, drawings: list[np.ndarray]) -> np.ndarray:
        """``[len(drawings), num_classes]`` for drawings of float32 ``[n, 3]`` points."""
        tf = self._tf
        lengths = np.fromiter((len(d) for d in drawings), np.int32, len(drawings))
        batch = np.zeros((3, len(drawings), int(lengths.max())), np.float32)
        for i, points in enumerate(drawings):
            batch[:, i, :len(points)] = points.T
        out = self._serve(x=tf.constant(batch[0]), y=tf.constant(batch[1]),
                          stroke_end=tf.constant(batch[2]), lengths=tf.constant(lengths))
        return out["probabilities"].numpy()
