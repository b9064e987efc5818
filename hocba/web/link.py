"""The gateway's connection to the services: the bus it sends on, and the announcements it follows.

It logs in to the broker with the command line's roles (`hocba.broker`): a school's staff's commands go with the
school tools' login, an operator's requests with the operators' login; the announcements are followed through
server-named queues of the school tools' login (`hocba.watch.Watch`) into the board: signing's batches, the one
status no service answers when asked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, Protocol, TypeVar

import aio_pika
from aiormq.exceptions import ChannelInvalidStateError

from hocba.commands import BrokerUnreachable, connect
from hocba.watch import Watch
from hocba.web.board import Board
from shared.contracts.base import Message, Model
from shared.contracts.signing import BatchCompleted, BatchProgress, BatchRefused
from shared.errors import NoAnswer
from shared.messaging import Bus
from shared.settings import Settings

A = TypeVar("A", bound=Model)
#: Whose login a message goes with: the schools' tools' or the department's operators'.
Login = Literal["school", "operator"]
#: The name the gateway goes by on the broker.
GATEWAY = "gateway"


class Link(Protocol):
    """What the pages need of the bus."""

    @property
    def ready(self) -> bool: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send(self, message: Message) -> None:
        """Publish a school staff member's command; `NoAnswer` when no service takes it."""
        ...

    async def ask(self, message: Message, answer: type[A], login: Login) -> A:
        """A request and its answer; `Refused` when the service says no, `NoAnswer` when none answers."""
        ...


def follow(board: Board) -> dict[type[Message], tuple[Callable[[Any], None], type[Any]]]:
    """Each announcement the board is told of, with its handler and what of it is read."""
    return {
        BatchProgress: (board.batch_progress, BatchProgress),
        BatchCompleted: (board.batch_completed, BatchCompleted),
        BatchRefused: (board.batch_refused, BatchRefused),
    }


class BusLink:
    """The gateway on a running stack's broker."""

    def __init__(self, school: Settings, operator: Settings, board: Board, timeout: float = 30.0) -> None:
        self.buses: dict[Login, Bus] = {"school": Bus(school, GATEWAY), "operator": Bus(operator, GATEWAY)}
        self.watch = Watch(school.amqp_url, school.names())
        for message, (handler, view) in follow(board).items():
            self.watch.on(message, handler, view)
        self.timeout = timeout
        self._ready = False

    @property
    def ready(self) -> bool:
        return self._ready and self.watch.connection is not None and not self.watch.connection.is_closed

    async def start(self) -> None:
        """Connect both logins and begin following; `BrokerUnreachable` says why it cannot."""
        for bus in self.buses.values():
            await connect(bus)
        try:
            await self.watch.start()
        except (aio_pika.exceptions.AMQPError, OSError) as exc:
            raise BrokerUnreachable(f"cannot follow the announcements on RabbitMQ: {exc}") from None
        self._ready = True

    async def stop(self) -> None:
        self._ready = False
        await self.watch.stop()
        for bus in self.buses.values():
            await bus.broker.stop()

    async def send(self, message: Message) -> None:
        try:
            await self.buses["school"].publish(message)
        except aio_pika.exceptions.DeliveryError:
            raise NoAnswer(f"nothing takes {message.ROUTING_KEY} here: its service is not running") from None
        except (aio_pika.exceptions.AMQPError, ChannelInvalidStateError, ConnectionError) as exc:
            raise BrokerUnreachable(f"lost the connection to RabbitMQ while sending: {exc}") from None

    async def ask(self, message: Message, answer: type[A], login: Login) -> A:
        try:
            return await self.buses[login].request(message, answer, self.timeout)
        except (aio_pika.exceptions.AMQPError, ChannelInvalidStateError, ConnectionError) as exc:
            raise BrokerUnreachable(f"lost the connection to RabbitMQ while asking: {exc}") from None
