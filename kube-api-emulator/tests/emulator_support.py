"""What the emulator's tests share."""

from __future__ import annotations

import os
import shutil

import pytest

# kubectl is part of what the tests prove works; where CI installs it, a missing kubectl
# fails the tests instead of skipping them.
needs_kubectl = pytest.mark.skipif(
    shutil.which("kubectl") is None and os.environ.get("CI") != "true",
    reason="kubectl is not installed",
)
