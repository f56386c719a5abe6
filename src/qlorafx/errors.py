"""The base of every error a user's input can cause: the CLI prints it and exits with code 2."""


class UserError(Exception):
    """Bad input (recipe, data, run directory): a message with what, where, and how to fix it."""
