"""``python -m glasscnn``: the ``glasscnn`` command."""

import sys

from glasscnn.cli.main import main

sys.exit(main())
