"""Named dependencies: endpoints read as signatures; tests override one dependency.

They are ``async def`` on purpose: they only read attributes, and FastAPI runs a plain
``def`` dependency in the thread pool, a thread hop per dependency per request (it
showed as a quarter of the event loop's time under concurrent single-record logs).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from chroma.api.services import Services
from chroma.catalog import Catalog, Operations
from chroma.ingest import GroupCommitter
from chroma.settings import Settings
from chroma.storage import FileStore

__all__ = [
    "CatalogDep", "CommitterDep", "OperationsDep", "ServicesDep", "SettingsDep", "StoreDep",
]


async def get_services(request: Request) -> Services:
    return request.app.state.services


async def get_catalog(services: Annotated[Services, Depends(get_services)]) -> Catalog:
    return services.catalog


async def get_store(services: Annotated[Services, Depends(get_services)]) -> FileStore:
    return services.store


async def get_committer(services: Annotated[Services, Depends(get_services)]) -> GroupCommitter:
    return services.committer


async def get_operations(services: Annotated[Services, Depends(get_services)]) -> Operations:
    return services.operations


async def get_settings(services: Annotated[Services, Depends(get_services)]) -> Settings:
    return services.settings


ServicesDep = Annotated[Services, Depends(get_services)]
CatalogDep = Annotated[Catalog, Depends(get_catalog)]
StoreDep = Annotated[FileStore, Depends(get_store)]
CommitterDep = Annotated[GroupCommitter, Depends(get_committer)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
OperationsDep = Annotated[Operations, Depends(get_operations)]
