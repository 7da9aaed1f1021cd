"""What every part of the store shares: the settings, the tables and the DynamoDB access."""

from __future__ import annotations

from typing import Any

from ..settings import Settings
from .dynamo import Dynamo, dynamodb_client


class StoreBase:
    def __init__(self, settings: Settings, client: Any | None = None, *, db: Dynamo | None = None):
        self.settings = settings
        self.runs_table = settings.runs_table
        self.events_table = settings.events_table
        self.retention_seconds = settings.run_retention_days * 86400
        self.db = db if db is not None else Dynamo(client if client is not None else dynamodb_client(settings.dynamodb_endpoint_url))

    @property
    def client(self) -> Any:
        return self.db.client
