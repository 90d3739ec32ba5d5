"""The ``certbound`` command line."""
