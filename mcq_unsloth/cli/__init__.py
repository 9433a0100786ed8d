"""The ``mcq-unsloth`` command line: options in, results and one-line errors out."""
