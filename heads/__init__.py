"""Task heads. Importing this package registers every head (it is the ``zoo.plugins`` entry point)."""
from heads import classification, lm  # noqa: F401
from heads import seq2seq  # noqa: F401
from heads import detection_dense, detection_detr  # noqa: F401
from heads import ctc  # noqa: F401
