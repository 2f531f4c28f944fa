"""Task packages. Importing this package registers every task and the task commands (it is the
``zoo.plugins`` entry point)."""
from tasks.engine import commands as _commands  # noqa: F401  (zoo train|eval|predict)
from tasks.engine import explain_command as _explain  # noqa: F401  (zoo explain)
from tasks.engine import export_command as _export  # noqa: F401  (zoo export)
from tasks.engine import quantize_command as _quantize  # noqa: F401  (zoo quantize)
from tasks.engine import prune_command as _prune  # noqa: F401  (zoo prune)
from tasks.engine import multitask as _multitask  # noqa: F401  (zoo multitask)
from tasks.sentiment import task as _sentiment  # noqa: F401
from tasks.translation import task as _translation  # noqa: F401
from tasks.text_generation import task as _text_generation  # noqa: F401
from tasks.image_classification import task as _image_classification  # noqa: F401
from tasks.asr import task as _asr  # noqa: F401
from tasks.speech_translation import task as _speech_translation  # noqa: F401
from tasks.detection import task as _detection  # noqa: F401
from tasks.captioning import task as _captioning  # noqa: F401
