"""The one error type for bad input data."""


class DataError(ValueError):
    """Bad input data; the message names the file or folder and the problem."""
