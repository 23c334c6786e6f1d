"""``python -m rtfuse_train STAGE ...`` (also under ``torchrun -m rtfuse_train``)."""

import sys

from rtfuse_train.cli import main

sys.exit(main())
