"""`python -m dualsweep.cli`, the same as the `dualsweep` command."""

import sys

from dualsweep.cli import main

sys.exit(main())
