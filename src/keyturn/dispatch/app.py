"""The Celery application both sides share: one queue per site, late acknowledgement, persistent messages.

The broker carries only `keyturn.rotate(request_id)`; everything else is in the database (the request
ledger), so a lost, duplicated or redelivered message can never lose or double a rotation:

* `task_acks_late` + `task_reject_on_worker_lost`: a message is acknowledged only after its rotation
  ended; a worker that dies mid-rotation leaves it unacknowledged, and the broker hands it to another
  worker (RabbitMQ at once when the connection drops; Redis after `visibility_timeout`).
* `worker_prefetch_multiplier = 1`: a worker reserves no more messages than it has threads free.
* persistent messages on durable queues; publisher confirms on RabbitMQ (`confirm_publish`), so an
  enqueue that returned is on the broker's disk.
* no result backend: results are read from the ledger.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from celery import Celery

TASK_ROTATE = "keyturn.rotate"
QUEUE_PREFIX = "keyturn."


def queue_name(site: str) -> str:
    """The Celery queue of a site."""
    return f"{QUEUE_PREFIX}{site}"


def make_app(broker_url: str, *, visibility_timeout: float = 300.0) -> Celery:
    """A Celery app for `broker_url` (redis://, rediss:// or amqp://)."""
    from celery import Celery

    app = Celery("keyturn", broker=broker_url, set_as_current=False)
    # Redis: a dead worker's unacknowledged messages are looked for every visibility_timeout / 5 s (1 to
    # 10 s), scanning each time; kombu's default scans on every tenth 10-second sweep only, so one
    # waited up to 100 s past its visibility timeout.
    transport: dict[str, object] = {"visibility_timeout": int(visibility_timeout),
                                    "unacked_restore_interval": max(1, min(10, int(visibility_timeout // 5))),
                                    "unacked_restore_throttle": 1}
    if broker_url.startswith(("amqp://", "amqps://", "pyamqp://")):
        transport = {"confirm_publish": True}
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        task_default_queue=queue_name("default"),
        task_default_delivery_mode="persistent",
        broker_transport_options=transport,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=5,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        worker_send_task_events=False,
        # Said explicitly (Celery warns at every connection loss otherwise): a task running when the
        # broker connection drops goes on; its redelivery is a duplicate the ledger ignores.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        enable_utc=True,
    )
    return app


__all__ = ["QUEUE_PREFIX", "TASK_ROTATE", "make_app", "queue_name"]
