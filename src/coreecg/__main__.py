"""``python -m coreecg`` (and ``torchrun -m coreecg``) run the command line."""

import sys

from coreecg.cli import main

sys.exit(main())
