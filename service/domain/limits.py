"""Limits of the public API that the HTTP layer states before any service is loaded."""

MAX_BATCH = 1000  # tasks in one `POST /v1/tasks/batch`
