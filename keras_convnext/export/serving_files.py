"""The example TF Serving configuration files written beside the model versions."""

from pathlib import Path

from keras_convnext.atomic_files import write_text_atomically

BATCHING_PARAMETERS = """\
max_batch_size { value: 32 }
batch_timeout_micros { value: 2000 }
max_enqueued_batches { value: 100 }
num_batch_threads { value: 4 }
"""


def models_config(name, base_path):
    """TF Serving's ``--model_config_file`` text for one model.

    Example:
        >>> print(models_config("flowers", "/models/flowers"))  # doctest: +ELLIPSIS
        model_config_list {...
    """
    return (
        "model_config_list {\n"
        "  config {\n"
        f'    name: "{name}"\n'
        f'    base_path: "{base_path}"\n'
        '    model_platform: "tensorflow"\n'
        "  }\n"
        "}\n"
    )


def write_serving_files(export_dir):
    """Writes ``models.config`` (the model named after ``export_dir``, served from ``/models/<name>``) and
    ``batching_parameters.txt`` into ``export_dir``, leaving files the user already has untouched.

    Example:
        >>> write_serving_files("serving/flowers")
    """
    export_dir = Path(export_dir)
    name = export_dir.resolve().name
    for file_name, text in (("models.config", models_config(name, f"/models/{name}")),
                            ("batching_parameters.txt", BATCHING_PARAMETERS)):
        if not (export_dir / file_name).exists():
            write_text_atomically(export_dir / file_name, text)
