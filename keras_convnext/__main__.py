"""``python -m keras_convnext`` runs the ``keras-convnext`` command."""

import sys

from keras_convnext.cli import main

sys.exit(main())
