import sys

from pik3s.cli import main

sys.exit(main())
