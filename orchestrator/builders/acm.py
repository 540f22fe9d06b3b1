"""What ACM says of a certificate, read by the phase that requests it (certificates) and by
the one that waits for it to be issued (certificates_issued), neither importing the other."""

from __future__ import annotations

# A certificate in one of these will never be issued: ACM moves it out of none of them.
DEAD_STATUSES = ("FAILED", "VALIDATION_TIMED_OUT", "REVOKED", "EXPIRED", "INACTIVE")
