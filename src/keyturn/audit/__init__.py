"""Audit: the hash-chained, append-only log (`chain.AuditLog`)."""

from __future__ import annotations

import keyturn.vault  # noqa: F401  first: vault.api imports audit.chain (else `import keyturn.audit` is circular)
from keyturn.audit.chain import AuditEntry, AuditLog

__all__ = ["AuditEntry", "AuditLog"]
