"""``python -m sam_mito`` (and ``accelerate launch -m sam_mito ...``) runs the ``sam-mito`` command."""

import sys

from .cli import main

sys.exit(main())
