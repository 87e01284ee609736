"""``python -m sipgate_ai_flow.cli``: the ``aiflow`` command without the console script."""

import sys

from . import main

sys.exit(main())
