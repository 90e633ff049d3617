"""Celery tasks of guides: thin, idempotent, enqueued after the transaction commits."""
from __future__ import annotations

from celery import shared_task

from .models import Notification


@shared_task(bind=True, acks_late=True, max_retries=3, default_retry_delay=30)
def send_notification_email(self, notification_id: int) -> None:
    """Mail one notification; does nothing if it is gone or was already mailed."""
    from . import services

    notification = Notification.objects.filter(id=notification_id, emailed_at__isnull=True).first()
    if notification is None:
        return
    try:
        services.notification_email_send(notification=notification)
    except OSError as exc:  # SMTP down: try again later, the row says it is not sent yet
        raise self.retry(exc=exc)
