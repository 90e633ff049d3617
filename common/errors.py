"""The error a worker records for people to read, not for an operator to debug.

A failed job's recorded error (a snapshot build, an export, an evaluation run, a pre-labeled
image) is shown through the API to curators and model teams and sent to model teams' webhooks.
:func:`public_error` turns the exception that failed it into that message:

- an exception of a kept type (:data:`KEPT` everywhere; :data:`KEPT_MODEL` where a model runs)
  keeps its wording, with absolute paths made harmless (:func:`storage_relative`): a refusal, a
  missing or unreadable file, a full disk, a model's own error, which the people who read it need
  to act on (a model team debugging its model needs torch's ``RuntimeError`` text);
- anything else is unexpected, and its text may carry internals (a database or broker host, a
  Python repr): it is logged in full at ERROR with a short reference, and the record only says
  that it failed unexpectedly and under which reference an operator finds the details in the
  worker log. Database errors (``django.db.Error``), Redis and kombu errors and programming errors
  (``KeyError``, ``TypeError``, ``AttributeError``, ``AssertionError``...) are all of this kind.
"""
from __future__ import annotations

import logging
import os
import re
import site
import sys
import sysconfig
import uuid

from django.conf import settings
from django.core.exceptions import ValidationError

log = logging.getLogger(__name__)

# Kept wherever a job fails: a service's refusal (ValidationError), a refusal or bad input
# (ValueError: the exporters' refusals, an image that does not decode, a split that cannot be
# assigned), and an I/O failure (OSError: a missing file, a permission, a full disk, and the
# requests exceptions, which are OSErrors), or the worker running out of memory (MemoryError: a
# file or batch too big for it). Their text is the reader's to act on.
KEPT: tuple[type[BaseException], ...] = (ValidationError, ValueError, OSError, MemoryError)
# Kept where a model runs (an evaluation run, a pre-labeling model's read): besides, the model's own
# errors, RuntimeError (torch raises it; pipeline.runtime.ExternalModelError is one).
KEPT_MODEL: tuple[type[BaseException], ...] = (*KEPT, RuntimeError)


def public_error(exc: BaseException, *, what: str, expected: tuple[type[BaseException], ...] = KEPT,
                 named: bool = False, subject: str = "") -> str:
    """The message to record for `exc`, which failed `what` ("build", "export", "evaluation", ...).

    An instance of one of the `expected` types (:data:`KEPT` or :data:`KEPT_MODEL`) keeps its
    message (a ValidationError's messages joined by "; "; with `named`, after its type's name, as
    "OSError: ..."), absolute paths made relative (:func:`storage_relative`). Anything else is
    logged with its traceback at ERROR, under a new reference and `subject` (what failed, e.g.
    "snapshot 12"), and the message names only the reference. Call it where the failure is
    recorded, once per failure.
    """
    if isinstance(exc, expected):
        if isinstance(exc, ValidationError):
            text = "; ".join(exc.messages)
        else:
            text = f"{type(exc).__name__}: {exc}" if named else str(exc)
        return storage_relative(text)
    reference = uuid.uuid4().hex[:12]
    log.error("%sthe %s failed unexpectedly (reference %s)", f"{subject}: " if subject else "", what, reference,
              exc_info=(type(exc), exc, exc.__traceback__))
    return (f"The {what} failed unexpectedly (reference {reference}); an operator can find the details in the "
            "worker log under that reference.")


def _roots() -> list[tuple[str, str, str]]:
    """The absolute folders a kept message must not show, as (folder, what a path under it
    becomes, what the folder itself becomes), longest folder first so the most specific wins:

    - where files are stored (MEDIA_ROOT, the default storage's location): a file there is named
      as it is in storage;
    - the project (settings.BASE_DIR): relative to it, as "pipeline/runtime.py";
    - Python's (site-packages, the standard library, sys.prefix and its base): "<python>/...".

    Each as configured and resolved, without a trailing separator; never "/" itself or a
    top-level folder such as "/usr" (every path under it would lose its start).
    """
    from django.core.files.storage import default_storage

    wanted: list[tuple[object, str, str]] = [(settings.MEDIA_ROOT, "", "<storage>")]
    location = getattr(default_storage, "location", None)  # FileSystemStorage; remote storages have none
    if isinstance(location, str | os.PathLike):
        wanted.append((location, "", "<storage>"))
    wanted.append((getattr(settings, "BASE_DIR", None), "", "."))
    python = [*site.getsitepackages(), site.getusersitepackages(), sys.prefix, sys.exec_prefix, sys.base_prefix,
              sys.base_exec_prefix, *(sysconfig.get_paths().get(k) for k in ("stdlib", "platstdlib", "purelib",
                                                                                 "platlib"))]
    wanted += [(folder, "<python>/", "<python>") for folder in python]
    found: dict[str, tuple[str, str]] = {}
    for folder, under, itself in wanted:
        if not folder or not os.path.isabs(str(folder)):
            continue
        for form in (os.path.normpath(str(folder)), os.path.realpath(str(folder))):
            form = form.rstrip(os.sep)
            if form.count(os.sep) >= 2:
                found.setdefault(form, (under, itself))  # the first named wins (storage, then the project)
    return sorted(((f, u, i) for f, (u, i) in found.items()), key=lambda r: len(r[0]), reverse=True)


def storage_relative(text: str) -> str:
    """`text` with every absolute path under a storage folder written as the file's name in storage,
    one under the project (settings.BASE_DIR) relative to it, and one under Python's folders
    (site-packages, the standard library, sys.prefix) as "<python>/...", so that a kept message
    does not reveal how the deployment is laid out (see :func:`_roots`)."""
    for folder, under, itself in _roots():
        # the folder, then a separator (a path under it) or the end of the path (the folder itself),
        # and not the end of a longer path's name ("/x/srv/app" is not under "/srv/app")
        pattern = r"(?<![\w.\-])" + re.escape(folder) + rf"(?:{re.escape(os.sep)}|(?![\w.\-]))"
        text = re.sub(pattern, lambda m, u=under, i=itself: u if m.group().endswith(os.sep) else i, text)
    return text
