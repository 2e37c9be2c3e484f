"""One router per resource; :mod:`chroma.api.app` assembles them."""
