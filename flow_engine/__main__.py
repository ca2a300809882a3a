"""`python -m flow_engine validate|dry-run …`: flows as code without a site (see flow_engine/cli.py)."""

import os
import sys

from flow_engine.cli import main

try:
	code = main()
	sys.stdout.flush()
except BrokenPipeError:  # output piped into `head`: stop quietly
	os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
	code = 1
sys.exit(code)
