"""The one exception type users see for bad input."""


class SamMitoError(ValueError):
    """Bad input or configuration, with a message naming the file, field or shape at fault.

    The command-line interface prints the message on one line and exits with status 2 instead of
    showing a traceback.
    """
