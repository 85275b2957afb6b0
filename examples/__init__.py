"""Examples of searching your own model (``search_space=module``)."""
