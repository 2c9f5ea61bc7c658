"""``python -m pmq``: the ``pmq`` command, for environments where its script is not on PATH."""

import sys

from pmq.cli import main

sys.exit(main())
