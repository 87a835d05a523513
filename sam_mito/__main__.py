"""``python -m sam_mito`` (and ``accelerate launch -m sam_mito ...``) runs the ``sam-mito`` command."""

import sys

from sam_mito.cli.main import main

sys.exit(main())
