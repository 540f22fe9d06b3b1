"""`python -m orchestrator ...`."""

import sys

from orchestrator.startup import run

sys.exit(run())
