"""The kit's one error type for mistakes a user can fix: every command prints it as one `error:` line and exits 2.

Standard library only: the runtime on the phone raises it too (BundleError is a subclass).
"""


class UserError(ValueError):
    """Bad input (file, flag, model, bundle): the message says what was wrong and what to do."""


class NotTextError(UserError, TypeError):
    """A runtime call given something that is not text (None, a number, a list): refused, not answered."""
