"""User-facing errors.

Anything a user can cause (a bad argument, a missing file, a corrupt table) raises
:class:`BevkdError` with a message that names the culprit; the CLI prints it as one line
instead of a traceback. Programming errors stay ordinary exceptions.
"""


class BevkdError(Exception):
    """An error caused by user input; its message is shown to the user as is."""
