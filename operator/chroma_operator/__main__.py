"""``python -m chroma_operator``: same as the ``chroma-operator`` console script."""

from chroma_operator.main import main

main()
