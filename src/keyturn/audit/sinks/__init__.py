"""Audit sinks: stream the hash-chained audit log to files, syslog and webhooks.

`base.Sink` is the contract; `jsonl`, `syslog`, `webhook` implement it; `formats` renders entries
(JSON lines, CEF); `buffer.Spool` is the bounded disk-backed spool with a durable cursor per sink;
`dispatcher.Dispatcher` moves new audit entries into each spool and delivers them with back-off.
"""

from __future__ import annotations

from keyturn.audit.sinks.base import AuditEvent, Sink
from keyturn.audit.sinks.dispatcher import Dispatcher, SinkStatus

__all__ = ["AuditEvent", "Dispatcher", "Sink", "SinkStatus"]
