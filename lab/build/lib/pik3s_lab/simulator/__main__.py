"""`python -m pik3s_lab.simulator`, and the entry point of the published zipapp."""

import sys

from .main import main

sys.exit(main())
