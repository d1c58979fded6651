"""Audit: the hash-chained, append-only log (`chain.AuditLog`)."""

from __future__ import annotations

from keyturn.audit.chain import AuditEntry, AuditLog

__all__ = ["AuditEntry", "AuditLog"]
