"""kombu's priority lists as the gateway counts them."""

from __future__ import annotations

from kombu.transport.redis import Channel

from gateway.fleet_metrics import priority_lists


def test_every_priority_step_is_its_own_list():
    lists = priority_lists("embed.m")
    assert lists == ["embed.m", "embed.m\x06\x163", "embed.m\x06\x166", "embed.m\x06\x169"]
    # the names kombu itself publishes to, step by step
    channel = Channel.__new__(Channel)
    channel.priority_steps = [0, 3, 6, 9]
    assert [channel._q_for_pri("embed.m", p) for p in (0, 3, 6, 9)] == lists
    assert priority_lists("embed.m", [0, 5]) == ["embed.m", "embed.m\x06\x165"]
