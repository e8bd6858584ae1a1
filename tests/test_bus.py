"""One test body over both buses: InMemoryBus and NatsBus against a real nats-server."""

from __future__ import annotations

import asyncio

import pytest

from stevie.bus import InMemoryBus, Msg, NatsBus, subject_matches

pytestmark = pytest.mark.integration


@pytest.fixture(params=["memory", "nats"])
async def bus(request, nats_server):
    if request.param == "memory":
        b = InMemoryBus()
    else:
        b = await NatsBus.connect(nats_server.url, name="test")
    yield b
    await b.close()


async def _settle(bus) -> None:
    if isinstance(bus, NatsBus):
        await bus.nc.flush()
        await asyncio.sleep(0.05)


async def test_wildcards_and_queue_groups(bus, subject_root):
    got: list[str] = []
    group: list[str] = []

    async def all_(m: Msg) -> None:
        got.append(m.subject)

    def member(tag: str):
        async def h(m: Msg) -> None:
            group.append(tag)

        return h

    await bus.subscribe(f"{subject_root}.md.*.binance.>", all_)
    await bus.subscribe(f"{subject_root}.md.book.*.*", member("a"), queue="q")
    await bus.subscribe(f"{subject_root}.md.book.*.*", member("b"), queue="q")
    await _settle(bus)
    for i in range(10):
        await bus.publish(f"{subject_root}.md.book.binance.S{i}", b"x")
    await bus.publish(f"{subject_root}.md.book.other.S", b"x")
    await _settle(bus)
    assert len(got) == 10
    assert len(group) == 11  # each message exactly once across the queue group


async def test_request_reply_and_timeout(bus, subject_root):
    async def echo(m: Msg) -> None:
        await bus.respond(m, m.data.upper())

    await bus.subscribe(f"{subject_root}.echo", echo)
    await _settle(bus)
    reply = await bus.request(f"{subject_root}.echo", b"ping", timeout_s=2)
    assert reply.data == b"PING"
    with pytest.raises(TimeoutError):
        await bus.request(f"{subject_root}.nobody", b"x", timeout_s=0.3)


async def test_durable_publish_deduplicates_on_msg_id(bus, subject_root):
    if isinstance(bus, NatsBus):
        await bus.ensure_stream(f"S{subject_root}", [f"{subject_root}.audit.>"])
    assert await bus.publish_durable(f"{subject_root}.audit.x", b"1", "id-1") is True
    assert await bus.publish_durable(f"{subject_root}.audit.x", b"1", "id-1") is False
    assert await bus.publish_durable(f"{subject_root}.audit.x", b"2", "id-2") is True
    if isinstance(bus, NatsBus):
        info = await bus.js.stream_info(f"S{subject_root}")
        assert info.state.messages == 2


@pytest.mark.parametrize(
    ("pattern", "subject", "ok"),
    [
        ("a.*.c", "a.b.c", True),
        ("a.*", "a.b.c", False),
        ("a.>", "a.b.c", True),
        ("a.>", "a", False),
        ("a.b", "a.b", True),
        ("a.b", "a.c", False),
    ],
)
def test_subject_matching(pattern, subject, ok):
    assert subject_matches(pattern, subject) is ok


async def test_endpoints_are_micro_services(bus, subject_root):
    async def upper(data: bytes) -> bytes:
        return data.upper()

    await bus.add_endpoint("echo-svc", "upper", f"{subject_root}.rpc.echo.upper", upper)
    await _settle(bus)
    assert (await bus.request(f"{subject_root}.rpc.echo.upper", b"abc")).data == b"ABC"
    if isinstance(bus, NatsBus):  # what `nats micro list` / `nats micro info` ask
        import json

        info = json.loads((await bus.request("$SRV.INFO.echo-svc", b"")).data)
        assert info["name"] == "echo-svc" and info["endpoints"][0]["subject"] == f"{subject_root}.rpc.echo.upper"
        stats = json.loads((await bus.request("$SRV.STATS.echo-svc", b"")).data)
        assert stats["endpoints"][0]["num_requests"] == 1
