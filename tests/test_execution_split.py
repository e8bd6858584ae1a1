"""The blue/green split of execution's decisions (``stevie.services.execution.split``): the share
is respected within binomial error, the split is deterministic per decision and monotone in
the share, green failures fall back to blue and count against green, rewards go back to the
stack that decided with their QoS sample, a stale share sends everything to blue."""

from __future__ import annotations

import math

import pytest

from stevie.contracts.ops import DeployShare
from stevie.contracts.rpc import Choice, ChooseRequest, RouterContext
from stevie.services.execution.split import SERVICE, StackSplit, colour_for, unit

S = 1_000_000_000


class Clock:
    def __init__(self) -> None:
        self.ns = 1_000 * S

    def __call__(self) -> int:
        return self.ns


def keys(n: int) -> list[str]:
    return [f"binance/BTCUSDT/{1_722_000_000 * S + i * 10 * S}" for i in range(n)]


@pytest.mark.parametrize("share", [0.01, 0.10, 0.25, 0.5])
def test_share_is_respected_within_binomial_error(share):
    n = 40_000
    green = sum(colour_for(k, share) == "green" for k in keys(n))
    sd = math.sqrt(n * share * (1 - share))
    assert abs(green - n * share) < 4 * sd, (green, n * share, sd)


def test_split_is_deterministic_and_monotone_in_the_share():
    ks = keys(5_000)
    assert [colour_for(k, 0.1) for k in ks] == [colour_for(k, 0.1) for k in ks]
    at10 = {k for k in ks if colour_for(k, 0.10) == "green"}
    at25 = {k for k in ks if colour_for(k, 0.25) == "green"}
    assert at10 < at25  # raising the share only adds decisions to green
    assert all(colour_for(k, 0.0) == "blue" for k in ks) and all(colour_for(k, 1.0) == "green" for k in ks)
    assert all(0.0 <= unit(k) < 1.0 for k in ks)
    with pytest.raises(ValueError, match="share"):
        colour_for("x", 1.5)


def choice(stack: str, score: float = 3.0, bonus: float = 1.0) -> Choice:
    return Choice("p_maker", score, bonus, 0.5, 0.1, {}, [], stack=stack)


def make(share: float, clock: Clock, mirror: bool = False) -> StackSplit:
    t = iter(range(10_000))
    sp = StackSplit(clock, lambda: next(t) * 0.002, mirror=mirror)  # every timer read 2 ms later
    sp.on_share(DeployShare("canary", share, "m2", clock()))
    return sp


async def test_decisions_go_to_their_stack_and_rewards_come_back():
    clock = Clock()
    sp = make(0.5, clock)
    calls: list[str] = []

    async def call(service: str, method: str, req: ChooseRequest, tp: type) -> Choice:
        calls.append(service)
        return choice("green" if service == SERVICE["green"] else "blue")

    ctxs = [RouterContext(symbol="BTCUSDT", obi=i / 100) for i in range(200)]
    got = [await sp.decide(call, c, "binance", "BTCUSDT", 1_722_000_000 * S + i * S) for i, c in enumerate(ctxs)]
    expected = [sp.pick("binance", "BTCUSDT", 1_722_000_000 * S + i * S) for i in range(200)]
    assert [c.stack for c in got] == expected and 60 < expected.count("green") < 140
    assert calls == [SERVICE[c] for c in expected]
    assert sp.reward_to(ctxs[0], 2.5) == SERVICE[expected[0]]
    assert sp.reward_to(ctxs[0], 2.5) == "router"  # already rewarded: unknown → blue
    assert sp.reward_to(RouterContext(symbol="BTCUSDT"), 1.0) == "router"  # a manual order's context
    batches = {b.colour: b.samples for b in sp.drain()}
    assert sum(len(v) for v in batches.values()) == 201  # 200 calls + 1 QoS sample
    qos = [x for x in batches[expected[0]] if x.latencyMs is None]
    assert [(q.predicted, q.realised) for q in qos] == [(2.0, 2.5)]  # score − bonus vs reward
    assert all(x.latencyMs == pytest.approx(2.0) for v in batches.values() for x in v if x.latencyMs is not None)
    assert sp.drain() == []


async def test_green_failure_falls_back_to_blue_and_counts_against_green():
    clock = Clock()
    sp = make(1.0, clock)

    async def call(service: str, method: str, req: ChooseRequest, tp: type) -> Choice:
        if service == SERVICE["green"]:
            raise RuntimeError("green-router.decide: 503")
        return choice("blue")

    ctx = RouterContext(symbol="BTCUSDT")
    c = await sp.decide(call, ctx, "binance", "BTCUSDT", 5 * S)
    assert c.stack == "blue" and sp.reward_to(ctx, 1.0) == "router"
    batches = {b.colour: b.samples for b in sp.drain()}
    assert [x.error for x in batches["green"]] == [True]
    assert [x.error for x in batches["blue"] if x.latencyMs is not None] == [False]

    async def down(service: str, method: str, req: ChooseRequest, tp: type) -> Choice:
        raise TimeoutError

    with pytest.raises(TimeoutError):
        await sp.decide(down, ctx, "binance", "BTCUSDT", 6 * S)


async def test_blue_decisions_are_mirrored_to_green_while_a_cutover_runs():
    """Share > 0: each decision blue takes also goes to green's ``choose`` (not traded), one
    green latency/error sample each; share 0: no mirror. The decision's choice is blue's."""
    import asyncio

    for share, expect_mirrors in ((0.3, True), (0.0, False)):
        sp = make(share, Clock(), mirror=True)
        calls: list[tuple[str, str]] = []

        async def call(service: str, method: str, req: ChooseRequest, tp: type, calls=calls) -> Choice:
            calls.append((service, method))
            await asyncio.sleep(0)
            if (service, method) == (SERVICE["green"], "choose"):
                raise RuntimeError("green down")  # a failing mirror counts against green
            return choice("green" if service == SERVICE["green"] else "blue")

        blue_taken = 0
        for i in range(50):
            ts = 1_722_000_000 * S + i * S
            c = await sp.decide(call, RouterContext(symbol="BTCUSDT"), "binance", "BTCUSDT", ts)
            blue_taken += c.stack == "blue"
            await asyncio.sleep(0.001)  # the mirror runs off the decision path
        await asyncio.gather(*sp.mirrors)
        mirrors = calls.count((SERVICE["green"], "choose"))
        assert mirrors == (blue_taken if expect_mirrors else 0) and blue_taken > 0
        green = {b.colour: b.samples for b in sp.drain()}.get("green", [])
        assert sum(x.error for x in green) == mirrors  # each mirror sample is an error here


def test_a_stale_or_invalid_share_sends_everything_to_blue():
    clock = Clock()
    sp = make(1.0, clock)
    assert sp.current_share() == 1.0
    sp.on_share(DeployShare("canary", 7.0, "m2", clock()))  # invalid: ignored
    assert sp.current_share() == 1.0
    clock.ns += 6 * S  # control silent longer than the 5 s TTL
    assert sp.current_share() == 0.0 and sp.pick("binance", "BTCUSDT", 1) == "blue"


async def test_due_rewards_ride_with_the_stack_asked_and_reach_the_fallback_before_it_decides():
    """The rewards of the stack asked first ride in its ``DecideRequest``; the other stack's
    go through ``send`` beside it; when green fails, blue's rewards are in before blue's
    fallback call, and green's carried ones are not re-sent."""
    import asyncio

    from stevie.contracts.rpc import MAX_CARRIED_REWARDS, DecideRequest, UpdateRequest

    ctx = RouterContext(symbol="BTCUSDT")
    blue_u, green_u = UpdateRequest("p_maker", 1.0, ctx), UpdateRequest("p_flat", -2.0, ctx)
    routed = [(SERVICE["blue"], blue_u), (SERVICE["green"], green_u)]
    for green_fails in (False, True):
        sp = make(1.0, Clock())  # everything to green first
        log: list[tuple[str, str, list[str]]] = []
        carried: list[list[str]] = []

        async def send(service: str, u: UpdateRequest, log=log) -> None:
            await asyncio.sleep(0.005)  # slower than the decide call
            log.append((service, "update", [u.policyId]))

        async def call(service: str, method: str, req: DecideRequest, tp: type, log=log, fails=green_fails) -> Choice:
            log.append((service, method, [r.policyId for r in req.rewards]))
            if fails and service == SERVICE["green"]:
                raise RuntimeError("green-router.decide: 503")
            return choice("green" if service == SERVICE["green"] else "blue")

        c = await sp.decide(call, ctx, "binance", "BTCUSDT", 5 * S, routed, send, carried.append)
        assert log[0] == (SERVICE["green"], "decide", ["p_flat"])  # green's reward carried
        assert carried == [[green_u]]
        if green_fails:
            assert c.stack == "blue"
            assert log[1:] == [(SERVICE["blue"], "update", ["p_maker"]), (SERVICE["blue"], "decide", [])]
        else:
            assert c.stack == "green" and log[1:] == [(SERVICE["blue"], "update", ["p_maker"])]
    # past the bound, the first stack's extra rewards go ahead as updates
    sp = make(0.0, Clock())
    sent: list[str] = []

    async def send_all(service: str, u: UpdateRequest) -> None:
        sent.append(service)

    async def blue(service: str, method: str, req: DecideRequest, tp: type) -> Choice:
        assert len(req.rewards) == MAX_CARRIED_REWARDS and len(sent) == 3  # the overflow went first
        return choice("blue")

    many = [(SERVICE["blue"], blue_u)] * (MAX_CARRIED_REWARDS + 3)
    assert (await sp.decide(blue, ctx, "binance", "BTCUSDT", 6 * S, many, send_all)).stack == "blue"
    with pytest.raises(ValueError, match="sender"):
        await sp.decide(blue, ctx, "binance", "BTCUSDT", 7 * S, routed)
