"""Notifications: finished rotations announced to a Slack-compatible webhook or by e-mail (SMTP).

`message` says what a notification holds and which rule wants it; `base.Channel` is the target
contract, `slack` and `smtp` implement it; `dispatcher.Notifier` reads rotation outcomes from the
durable audit table with a cursor per rule, spools them and delivers them in order with back-off (the
audit sinks' machinery). Configured as `[[keyturn.notify]]` tables (`keyturn.config.NotifyConfig`),
run by `keyturn serve`, inspected with `keyturn notify status` and `keyturn notify test NAME`.
"""

from __future__ import annotations

from keyturn.notify.dispatcher import Notifier
from keyturn.notify.message import Notification, Rule

__all__ = ["Notification", "Notifier", "Rule"]
