"""Container images per GPU generation: settings, Python lockfiles, base-image pins, Dockerfile rendering,
build commands and the image identity that results record as provenance.

The sources live in `containers/` of a grpo-suite checkout (settings, requirements, Dockerfile template);
these modules are plain functions over them, driven by `python -m suite.containers` and the nox sessions.
"""
