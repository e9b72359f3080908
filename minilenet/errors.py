"""UserError: a mistake the user can fix (a bad file, image or flag value).

The ``minilenet`` command prints such an error as one line, ``error: <message>``,
on stderr and exits with status 2 (a traceback only with ``--debug`` or
``MINILENET_DEBUG=1``). The message says what was wrong, where, and what to do.
"""


class UserError(ValueError):
    """A mistake in the user's input: the message names the file, flag or value."""
