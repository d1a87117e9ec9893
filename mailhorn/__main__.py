"""``python -m mailhorn``: the same as the ``mailhorn`` command."""

import sys

from mailhorn.cli.main import main

sys.exit(main())
