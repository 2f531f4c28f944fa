"""The one exception type for mistakes a user can fix: bad flags, files, fields and data.

Raise :class:`ZooError` with one line that names the flag, file, line or field and says what
to do instead. The ``zoo`` command prints it as ``zoo: error: <message>`` with a non-zero
status and no traceback (``ZOO_DEBUG=1`` shows the traceback). It subclasses ``ValueError``
so code that already catches ``ValueError`` keeps working.
"""
from __future__ import annotations


class ZooError(ValueError):
    """A user error with a one-line message naming what is wrong and the fix."""
