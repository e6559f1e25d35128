"""``python -m keras_convnext.export REQUEST_JSON``: the TensorFlow-backend half of ``export_saved_model``,
``export_litert`` and ``export_openvino`` (``tensorflow_process.run_in_tensorflow_process`` starts it).

A failure ends with one ``ERROR <type>: <message>`` line on stderr, which the calling process raises again.
"""

import json
import sys
from pathlib import Path

from keras_convnext.export.litert import write_litert
from keras_convnext.export.openvino import write_openvino
from keras_convnext.export.saved_model import write_version

WRITERS = {"saved_model": write_version, "litert": write_litert, "openvino": write_openvino}

if __name__ == "__main__":
    request = json.loads(sys.argv[1])
    try:
        WRITERS[request.get("task", "saved_model")](request["spec"], Path(request["target"]), **request["options"])
    except Exception as error:  # noqa: BLE001 - reported whole to the parent process, which raises it
        print(f"ERROR {type(error).__name__}: {' '.join(str(error).split())}", file=sys.stderr)
        sys.exit(1)
