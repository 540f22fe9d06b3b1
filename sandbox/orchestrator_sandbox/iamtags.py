"""IAM's rule for tag values, which moto does not play.

IAM's API model gives a tag value at most 256 characters matching
`[\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*`: letters, spaces, digits and `_.:/=+-@`. A value with a
comma, a parenthesis, a quote or a semicolon is refused with a ValidationError, and the
whole call with it. moto checks only the length (and the keys' characters): this makes it
check the values' characters as IAM does, for every call that tags (create and tag).
"""

from __future__ import annotations

import re
from typing import Any

# \w is Python's letters, digits and underscore; spaces stand for \p{Z}.
ALLOWED_VALUE = re.compile(r"[\w _.:/=+\-@]*")


def make_iam_tags_strict() -> None:
    from moto.iam.exceptions import ValidationError
    from moto.iam.models import IAMBackend

    original = IAMBackend._tag_verification
    if getattr(original, "sandbox_patched", False):
        return

    def tag_verification(self: Any, tags: list[dict[str, str]]) -> Any:
        checked = original(self, tags)
        for index, tag in enumerate(tags, start=1):
            value = tag.get("Value", "")
            if not ALLOWED_VALUE.fullmatch(value):
                raise ValidationError(
                    f"1 validation error detected: Value '{value}' at "
                    f"'tags.{index}.member.value' failed to satisfy constraint: Member must "
                    "satisfy regular expression pattern: [\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*"
                )
        return checked

    tag_verification.sandbox_patched = True  # type: ignore[attr-defined]
    tag_verification.original = original  # type: ignore[attr-defined]
    IAMBackend._tag_verification = tag_verification


def make_iam_tags_lenient() -> None:
    """moto's own check again (for in-process tests that share moto's classes)."""
    from moto.iam.models import IAMBackend

    original = getattr(IAMBackend._tag_verification, "original", None)
    if original is not None:
        IAMBackend._tag_verification = original
