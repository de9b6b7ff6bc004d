"""`python -m stream` = `profilestream`."""

import sys

from .cli import main

sys.exit(main())
