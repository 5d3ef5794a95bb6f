"""`python -m pyike` is `pyike`."""

import sys

from pyike.cli import main

sys.exit(main())
