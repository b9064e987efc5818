"""Real infrastructure for integration tests: RabbitMQ and a MongoDB-wire server."""

from __future__ import annotations

import socket
from urllib.parse import urlparse

import pytest

from shared.messaging import delete_exchanges
from shared.mongo import Index, ensure_indexes, make_client
from shared.settings import Names, Settings
from tests.support import amqp_url, mongo_server


@pytest.fixture(scope="session")
def rabbit_url() -> str:
    url = amqp_url()
    parsed = urlparse(url)
    try:
        socket.create_connection((parsed.hostname, parsed.port or 5672), 2).close()
    except OSError as exc:
        pytest.fail(f"RabbitMQ is not reachable at {url} ({exc}); `make test` starts it, or set AMQP_URL")
    return url


@pytest.fixture(scope="session")
def mongo_url(tmp_path_factory) -> str:
    with mongo_server(tmp_path_factory.mktemp("mongo")) as url:
        yield url


@pytest.fixture
def settings(namespace: str, rabbit_url: str, mongo_url: str, tmp_path) -> Settings:
    """This test's namespace on the real broker and database; its key rings and generated keys under `tmp_path`."""
    return Settings(
        data_dir=tmp_path / "hocba",
        namespace=namespace,
        amqp_url=rabbit_url,
        mongo_url=mongo_url,
        delivery_limit=3,
        chunk_size=10,
    )


@pytest.fixture
async def mongo_client(mongo_url: str, namespace: str):
    client = make_client(mongo_url)
    yield client
    prefix = namespace.replace(".", "_").replace("-", "_")
    for name in await client.list_database_names():
        if name.startswith(prefix):
            await client.drop_database(name)
    await client.close()


@pytest.fixture(autouse=True)
async def remove_namespace_exchanges(namespace: str, rabbit_url: str):
    """Each test's exchanges go with it (its queues are removed by whatever declared them)."""
    yield
    await delete_exchanges(rabbit_url, Names(namespace))


@pytest.fixture(params=["in-memory", "mongodb"])
def backend(request: pytest.FixtureRequest) -> str:
    """Which repository a contract test runs against: the in-memory one, or the MongoDB one on a real server.

    A service's repository contract (`test_<service>_repository.py`) runs every test against both,
    so the fake the unit tests use keeps the promises the real one keeps.
    """
    return request.param


async def service_database(mongo_client, settings: Settings, service: str, indexes: list[Index]):
    """The service's own database in this test's namespace, with its indexes, as the service makes it at start."""
    db = mongo_client[settings.names().database(service)]
    await ensure_indexes(db, indexes)
    return db
