"""The old home of the Jobs' result helpers; the result documents live in :mod:`visionops.contract` now.

Kept for its last importer (``visionops.demo``): ``read_result`` gives any Job's result as plain JSON fields.
"""

from visionops.contract import TERMINATION_MESSAGE_LIMIT, read_result

__all__ = ["TERMINATION_MESSAGE_LIMIT", "read_result"]
