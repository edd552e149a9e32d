"""One exception type for mistakes a user can fix; the CLIs print it as a single line and exit 2."""


class UserError(ValueError):
    """Bad input (file, flag, model): the message says what was wrong and what to do."""
