"""``python -m model.scenes write-sample OUT``: see :mod:`model.scenes.sample`."""

import sys

from model.scenes.sample import main

sys.exit(main())
