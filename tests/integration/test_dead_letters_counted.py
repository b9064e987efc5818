"""Every dead letter is counted and says its queue and reason, on real RabbitMQ; a handler's failures are counted apart
from a message's returns by consumers that stopped; a message sent with another school's token is forbidden."""

from __future__ import annotations

import aio_pika

from services.grades.app import build_app as grades_app
from shared.contracts.grades import RecordAssessments
from shared.messaging import DELIVERY_LIMIT, QUEUE_HEADER, REASON_HEADER
from tests.integration.test_messaging import Harness, Ping, started, wait_for
from tests.support import drain, running
from tests.unit.grades.builders import KEYS, SCHOOL, YEAR, full_year, service_pki, subject_teacher, with_pki


async def handed_back(url: str, queue: str, times: int) -> int:
    """Take the one message of `queue` and hand it back `times` times, as consumers that stop holding it do; the
    returns the broker counted on it at the last look (`x-delivery-count`)."""
    connection = await aio_pika.connect(url)
    async with connection:
        declared = await (await connection.channel()).declare_queue(queue, passive=True)
        returned = -1
        for _ in range(times):
            message = await declared.get(fail=False, timeout=5)
            assert message is not None, f"the broker dead-lettered the message after {returned + 1} returns"
            returned = int(message.headers.get("x-delivery-count", 0))
            await message.reject(requeue=True)
        return returned + 1


def dead_lettered(harness: Harness) -> float:
    """Everything the service counted as dead-lettered from the Ping queue, whatever the reason."""
    return sum(
        sample.value
        for metric in harness.registry.collect()
        if metric.name == "hocba_messages_dead_lettered"
        for sample in metric.samples
        if sample.name.endswith("_total") and sample.labels.get("queue") == harness.queue
    )


async def test_a_message_handed_back_as_often_as_its_queue_allows_is_dead_lettered_by_the_service_and_counted(
    settings,
):
    """Reproduction (the worker-kill and poison drills): what the broker dead-lettered by its delivery limit carried
    only `x-death`, no `x-hocba-queue` to replay it by, and `hocba_messages_dead_lettered_total` never counted it."""
    harness = Harness(settings)
    async with started(harness, settings):
        await harness.app.stop()  # nobody consumes while the message is handed back
        await harness.broker.connect()
        await harness.bus.publish(Ping(n=9))
        limit = harness.topology.broker_limit
        assert await handed_back(settings.amqp_url, harness.queue, limit) == limit
        await harness.app.start()
        [letter] = await harness.dead_letters(settings.amqp_url, timeout=10)
    assert 9 not in harness.attempts, "not handled: at its next return the broker would have dead-lettered it"
    assert "x-death" not in letter.headers, "dead-lettered by the service, not by the broker"
    assert (letter.headers[REASON_HEADER], letter.headers[QUEUE_HEADER]) == (DELIVERY_LIMIT, harness.queue)
    assert harness.counted("hocba_messages_dead_lettered_total", DELIVERY_LIMIT) == 1


async def test_a_message_handed_back_often_is_still_tried_as_often_as_a_handler_may_fail(settings):
    """Reproduction (the worker-kill drill): the edge took the returns of consumers that stopped for its handler's
    failures, so a message handed back twice was dead-lettered at its first failure."""
    harness = Harness(settings)
    async with started(harness, settings):
        await harness.app.stop()
        await harness.broker.connect()
        await harness.bus.publish(Ping(n=4, mode="transient"))
        await handed_back(settings.amqp_url, harness.queue, settings.delivery_limit + 2)
        await harness.app.start()
        [letter] = await harness.dead_letters(settings.amqp_url, timeout=30)
    assert harness.attempts[4] == settings.delivery_limit, "its handler failed as often as it may, no fewer"
    assert letter.headers[REASON_HEADER] == "retries-exhausted"


async def test_every_dead_letter_is_counted(settings):
    """Reproduction (the poison drill): `hocba_messages_dead_lettered_total` said 840 while the queues held 950."""
    harness = Harness(settings)
    async with started(harness, settings):
        await harness.publish_raw(Ping, b'{"n": "not a number"}')
        await harness.bus.publish(Ping(n=1, mode="forbidden"))
        await harness.bus.publish(Ping(n=2, items=[1, 2, 3]))  # its odd items are refused, the rest taken
        await harness.bus.publish(Ping(n=3, mode="transient"))
        await wait_for(lambda: 2 in harness.handled and harness.attempts.get(3) == settings.delivery_limit, 30)
        letters = await harness.dead_letters(settings.amqp_url, timeout=10)
    assert sorted(m.headers[REASON_HEADER] for m in letters) == ["forbidden", "invalid", "invalid", "retries-exhausted"]
    assert all(m.headers[QUEUE_HEADER] == harness.queue for m in letters)
    assert dead_lettered(harness) == len(letters)


async def test_entries_sent_with_another_schools_token_are_dead_lettered_as_forbidden_at_once(
    mongo_client, settings, tmp_path
):
    """Reproduction (the poison drill): entries sent with another school's token for students the school does not
    have waited for their enrolment, were tried again and again, and ended dead-lettered as anything but
    forbidden; a closed year answered them as closed."""
    service = grades_app(with_pki(settings, service_pki(tmp_path)), mongo=mongo_client, issuer_keys=KEYS)
    queue = service.topology.queue_name(RecordAssessments.ROUTING_KEY)
    stranger = subject_teacher(school="79000702")
    async with running(service):
        command = RecordAssessments(school_code=SCHOOL, school_year=YEAR, entries=full_year("nobody-here"))
        await service.bus.publish(stranger.signs(command))
        letters = await drain(settings.amqp_url, f"{queue}.dlq", timeout=10)
    [letter] = letters
    assert (letter.headers[REASON_HEADER], letter.headers[QUEUE_HEADER]) == ("forbidden", queue)
    assert service.registry.get_sample_value("hocba_messages_retried_total", {"queue": queue}) == 0, "never retried"
    counted = service.registry.get_sample_value(
        "hocba_messages_dead_lettered_total", {"queue": queue, "reason": "forbidden"}
    )
    assert counted == 1


async def test_a_queue_an_earlier_release_declared_with_its_lower_delivery_limit_is_used_as_it_is(settings, caplog):
    """RabbitMQ refuses to declare a queue again with another `x-delivery-limit`: the service would not start."""
    harness = Harness(settings)
    spec = harness.topology.queue_for(Ping)
    earlier = {**spec.arguments, "x-delivery-limit": settings.delivery_limit}
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        await (await connection.channel()).declare_queue(harness.queue, durable=True, arguments=earlier)
    async with started(harness, settings):
        await harness.bus.publish(Ping(n=1))
        await wait_for(lambda: 1 in harness.handled)
    assert any("exists with other arguments" in r.getMessage() for r in caplog.records)
