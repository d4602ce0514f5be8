"""The one exception type that means "the user's input is wrong".

The CLI turns it into a one-line message and exit code 2; anything else is a bug (exit code 3).
"""


class PrivauditError(Exception):
    """Bad input or usage: a missing file, a wrong column, an untrusted model file, ..."""
