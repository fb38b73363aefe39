"""Built-in data shipped in the wheel: schemas, blueprints, CI templates.

In the source tree these are symlinks to the top-level folders; the wheel carries copies.
Read them only through generator.resources.
"""
