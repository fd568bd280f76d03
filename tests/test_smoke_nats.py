from nats.js import JetStreamContext


async def test_fixture_serves_jetstream(js: JetStreamContext) -> None:
    await js.add_stream(name="SMOKE", subjects=["smoke.>"])
    ack = await js.publish("smoke.a", b"x")
    assert ack.seq == 1
