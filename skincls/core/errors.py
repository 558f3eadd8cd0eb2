"""User-facing errors: anything a user can fix by changing a file, a flag or the data.

The CLI prints these as one message on stderr with a non-zero exit; everything else is a bug and
keeps its traceback.
"""

from __future__ import annotations


class SkinclsError(Exception):
    """A mistake in user input (file, row, field or option), reported without a traceback."""

    exit_code = 2


class RegionSpecError(SkinclsError):
    """One or more region YAML files failed validation; ``problems`` lists every message."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


class DataError(SkinclsError):
    """A record of the data (file, CSV row, JSON key) is not what the region expects."""
