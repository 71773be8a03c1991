"""Bundled data: the sample market tape (and later order tapes); read with importlib.resources."""
