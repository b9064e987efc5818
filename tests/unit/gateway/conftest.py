"""The web gateway on FastStream's in-memory broker: the pages through Starlette's TestClient, the services they
talk to (grades, signing, sync) built with in-memory repositories, as tests/wiring builds them.

(No `from __future__ import annotations` here: FastStream reads the followers' annotations as types.)

    with web(signing) as page:            # the gateway's app running, its link on signing's in-memory broker
        page.sign_in("ht-79000701")       # as the development picker does
        answer = page.client.get("/schools/79000701")
        page.run(page.link.publish, event)   # a coroutine in the app's event loop (a service's announcement)
"""

import contextlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from faststream.rabbit import TestRabbitBroker
from starlette.testclient import TestClient

from hocba.ministry_simulator import ReceiptStore, create_app
from hocba.staff import StaffMember, StaffRegister
from hocba.web.app import Gateway, GatewayConfig, build_app
from hocba.web.board import Board
from hocba.web.link import follow
from hocba.web.people import DevelopmentVoucher
from services.grades.app import build_app as build_grades
from services.grades.repository import InMemoryGradesRepository
from services.signing.app import build_app as build_signing
from services.signing.repository import InMemorySigningRepository
from services.sync.app import build_app as build_sync
from services.sync.repository import InMemoryOutboxRepository
from shared.auth import audience_of
from shared.contracts.base import Message
from shared.errors import NoAnswer
from shared.messaging import dead_letter_queue, quorum_queue
from shared.service import ServiceApp
from tests.unit.signing.trust import CLASSES, OTHER_SCHOOL, SCHOOL, YEAR, Trust, make_trust
from tests.unit.sync.sealed import trust as sync_trust

#: A school enrolled with no certificate for anyone (signing refuses its principal's click).
UNCERTIFIED_SCHOOL = "79000709"


def following(service: ServiceApp, board: Board) -> None:
    """The board told of what `service` announces, as the gateway's watch tells it on a real broker."""
    names = service.settings.names()
    for message, (handler, view) in follow(board).items():
        queue = quorum_queue(names, names.queue("gateway", message.ROUTING_KEY), message.ROUTING_KEY, 3)

        def told(handler: Callable[[Any], None], view: type) -> Callable[..., Any]:
            async def collect(body) -> None:  # noqa: ANN001 - the view, set below
                handler(body)

            collect.__annotations__ = {"body": view, "return": None}
            return collect

        service.broker.subscriber(queue, exchange=service.bus.exchange)(told(handler, view))


def dead_letters(service: ServiceApp) -> list[dict]:
    """What `service` dead-letters, from any of its queues (a refused request is dead-lettered, and announced)."""
    kept: list[dict] = []
    names = service.settings.names()
    for queue in list(service.topology.queues):

        async def keep(body: dict) -> None:
            kept.append(body)

        service.broker.subscriber(dead_letter_queue(names, queue), exchange=service.bus.dlx)(keep)
    return kept


class InMemoryLink:
    """The gateway's link on the in-memory brokers of the services it talks to: a message goes to the service its
    routing key names (none running: `NoAnswer`, as on a real broker)."""

    def __init__(self, board: Board, *services: ServiceApp) -> None:
        self.services = {service.bus.service: service for service in services}
        for service in services:
            following(service, board)
        self.dead_letters = {service.bus.service: dead_letters(service) for service in services}
        self.contexts: list[TestRabbitBroker] = []
        self.sent: list[Message] = []

    @property
    def ready(self) -> bool:
        return bool(self.contexts)

    async def start(self) -> None:
        for service in self.services.values():
            context = TestRabbitBroker(service.broker)
            await context.__aenter__()
            self.contexts.append(context)

    async def stop(self) -> None:
        while self.contexts:
            await self.contexts.pop().__aexit__(None, None, None)

    def _service(self, message: Message) -> ServiceApp:
        service = self.services.get(audience_of(message))
        if service is None:
            raise NoAnswer(f"nothing takes {message.ROUTING_KEY} here: its service is not running")
        return service

    async def send(self, message: Message) -> None:
        self.sent.append(message)
        await self._service(message).bus.publish(message)

    async def ask(self, message: Message, answer: type, login: str) -> Any:
        self.sent.append(message)
        return await self._service(message).bus.request(message, answer, 5.0)

    async def publish(self, message: Message) -> None:
        """An announcement as another service publishes it, to the service that consumes it."""
        (service,) = [
            s
            for s in self.services.values()
            if any(q.routing_key == message.ROUTING_KEY for q in s.topology.queues.values())
        ]
        await service.bus.publish(message)


CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class Page:
    """The gateway's app in a TestClient, and what it talks to."""

    client: TestClient
    link: InMemoryLink
    board: Board

    def run(self, function: Callable[..., Any], *args: Any) -> Any:
        """Call an async function in the app's event loop (where the in-memory brokers live)."""
        assert self.client.portal is not None
        return self.client.portal.call(function, *args)

    def csrf(self, path: str = "/sign-in") -> str:
        found = CSRF_FIELD.search(self.client.get(path).text)
        assert found, f"{path} has a form token"
        return found.group(1)

    def sign_in(self, who: str) -> httpx.Response:
        """Sign in as the development picker does."""
        self.client.cookies.clear()
        return self.client.post("/sign-in", data={"who": who, "csrf": self.csrf()})

    def post(self, path: str, data: dict[str, str] | None = None, from_page: str | None = None) -> httpx.Response:
        """Submit a form of `from_page` (default: the page `path` belongs to), with its token."""
        page = from_page or path.rsplit("/", 1)[0]
        return self.client.post(path, data={"csrf": self.csrf(page), "year": YEAR, **(data or {})})


@pytest.fixture(scope="module")
def trust(tmp_path_factory) -> Trust:
    return make_trust(tmp_path_factory.mktemp("gateway"))


def member(staff_id: str, name: str, role: str, school: str = SCHOOL, classes: tuple[str, ...] = ()) -> StaffMember:
    return StaffMember(staff_id, name, role, school, classes)  # type: ignore[arg-type]


@pytest.fixture
def register(tmp_path) -> StaffRegister:
    """Two schools' staff as `hocba pki enrol` registers them (the ids their certificates name), and a school whose
    staff hold no certificate."""
    people = [
        member(f"ht-{SCHOOL}", "Nguyễn Thị Hoa", "principal"),
        member(f"admin-{SCHOOL}", "Trần Văn Bình", "school_admin"),
        *(member(f"gvcn-{SCHOOL}-{c}", f"Cô giáo lớp {c}", "homeroom_teacher", classes=(c,)) for c in CLASSES),
        member(f"ht-{OTHER_SCHOOL}", "Lê Văn Cường", "principal", OTHER_SCHOOL),
        member(f"ht-{UNCERTIFIED_SCHOOL}", "Phạm Thị Dung", "principal", UNCERTIFIED_SCHOOL),
    ]
    return StaffRegister(
        tmp_path / "staff.json",
        {
            SCHOOL: "Trường THCS thử nghiệm",
            OTHER_SCHOOL: "Trường THCS khác",
            UNCERTIFIED_SCHOOL: "Trường chưa có chứng thư",
        },
        {m.staff_id: m for m in people},
    )


@pytest.fixture
def signing(settings, trust) -> tuple[ServiceApp, InMemorySigningRepository]:
    repo = InMemorySigningRepository()
    service = build_signing(
        settings, repository=repo, signers=trust.checked_signers(), issuer_keys=trust.issuer.public_keys()
    )
    return service, repo


@pytest.fixture
def grades(settings, trust) -> tuple[ServiceApp, InMemoryGradesRepository]:
    """grades with an empty repository (a test adds the records it assembled and the steps they reached), taking
    the staff's tokens from the same issuer, its own certificate in the same PKI."""
    repo = InMemoryGradesRepository()
    configured = settings.model_copy(
        update={"pki_dir": trust.pki.folder, "pki_passphrase": trust.pki.passphrase.decode()}
    )
    return build_grades(configured, repository=repo, issuer_keys=trust.issuer.public_keys()), repo


@pytest.fixture
def sync(settings, trust, tmp_path) -> Iterator[ServiceApp]:
    """sync with an empty outbox, taking operators' tokens from the same issuer."""
    jwks = tmp_path / "issuer.jwks.json"
    jwks.write_text(json.dumps({"keys": [trust.issuer.key.as_dict(private=False)]}))
    ministry = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(ReceiptStore())))
    configured = settings.model_copy(update={"actor_issuer_jwks": jwks, "ministry_url": "http://ministry.test"})
    yield build_sync(configured, repository=InMemoryOutboxRepository(), http_client=ministry, trust=sync_trust)


@pytest.fixture
def web(trust, register) -> Callable[..., contextlib.AbstractContextManager[Page]]:
    """`web(*services, link=None)`: the gateway's app running, talking to `services` (or through `link`)."""

    @contextlib.contextmanager
    def running(*services: ServiceApp, link: Any = None, raise_server_exceptions: bool = True) -> Iterator[Page]:
        board = Board()
        link = link or InMemoryLink(board, *services)
        gateway = Gateway(
            config=GatewayConfig(school_year=YEAR, session_key="test-session-key", poll_seconds=0.5),
            link=link,
            board=board,
            voucher=DevelopmentVoucher(trust.issuer, lambda: register),
            register=lambda: register,
        )
        app = build_app(gateway)
        with TestClient(app, follow_redirects=False, raise_server_exceptions=raise_server_exceptions) as client:
            yield Page(client, link, board)

    return running
