"""``python -m keras_convnext.export REQUEST_JSON``: the TensorFlow-backend half of ``export_saved_model``."""

import json
import sys
from pathlib import Path

from keras_convnext.export.saved_model import write_version

if __name__ == "__main__":
    request = json.loads(sys.argv[1])
    write_version(request["spec"], Path(request["target"]), **request["options"])
