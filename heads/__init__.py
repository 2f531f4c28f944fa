"""Task heads. Importing this package registers every head (it is the ``zoo.plugins`` entry point)."""
from heads import classification, lm  # noqa: F401
