"""Which TensorFlow ops a SavedModel's graph holds, and a check that TF Serving can run all of them."""

from pathlib import Path

# Ops that TF Serving's stock builds cannot run: XLA-compiled modules (jax2tf), Python callbacks.
FORBIDDEN_OPS = ("XlaCallModule", "PyFunc", "PyFuncStateless", "EagerPyFunc")


def saved_model_ops(version_dir):
    """The sorted names of every op in the SavedModel's graph and its function library.

    Example:
        >>> "Conv2D" in saved_model_ops("export/convnext/1")  # an exported version folder  # doctest: +SKIP
        True
    """
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((Path(version_dir) / "saved_model.pb").read_bytes())
    ops = set()
    for meta_graph in proto.meta_graphs:
        ops.update(node.op for node in meta_graph.graph_def.node)
        for function in meta_graph.graph_def.library.function:
            ops.update(node.op for node in function.node_def)
    return sorted(ops)


def check_standard_ops(version_dir):
    """Returns the ops, after checking that each is registered in stock TensorFlow and none is XLA or Python.

    Example:
        >>> check_standard_ops("export/convnext/1")[:3]  # an exported version folder  # doctest: +SKIP
        ['AddV2', 'Assert', 'BiasAdd']
    """
    from tensorflow.python.framework import op_def_registry

    ops = saved_model_ops(version_dir)
    forbidden = [op for op in ops if op in FORBIDDEN_OPS or op.startswith("Xla")]
    unknown = [op for op in ops if op_def_registry.get(op) is None]
    if forbidden or unknown:
        raise ValueError(f"{version_dir} holds ops TF Serving cannot run: forbidden {forbidden}, unregistered {unknown}.")
    return ops
