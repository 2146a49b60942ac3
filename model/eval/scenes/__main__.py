"""``python -m model.eval.scenes write-sample OUT``: see :mod:`model.eval.scenes.sample`."""

import sys

from model.eval.scenes.sample import main

sys.exit(main())
