"""Serving: SavedModel for TF Serving, LiteRT, ONNX and OpenVINO from a model trained on any backend, float or int8.

Example:
    >>> from keras_convnext.export import export_saved_model
    >>> export_saved_model("runs/flowers", "serving/flowers", version=1)  # a train --output folder  # doctest: +SKIP
"""

from keras_convnext.export.graph_ops import check_standard_ops, saved_model_ops
from keras_convnext.export.litert import export_litert
from keras_convnext.export.onnx import export_onnx
from keras_convnext.export.openvino import export_openvino
from keras_convnext.export.saved_model import export_saved_model
from keras_convnext.export.serving_graph import SIGNATURES
