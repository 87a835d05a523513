"""The ``sam-mito`` command, one module per command."""
