"""`mcq-unsloth ui`: the whole workflow in a local web page, a thin layer over the public API."""
