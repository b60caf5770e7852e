"""Services: loops that run until they are stopped, restarted when they fail.

taskloom serve examples/services.py           # starts read_sensor; Ctrl-C stops all
taskloom services                             # name, state, since, starts, restarts
taskloom service stop read_sensor
taskloom service start read_sensor --config period=0.5
taskloom service start heartbeat
taskloom service logs read_sensor --follow
"""

from __future__ import annotations

import random

from pydantic import BaseModel

import taskloom


class SensorConfig(BaseModel):
    """How the sensor is read."""

    period: float = 1.0  # seconds between two readings
    channel: str = "a"


@taskloom.service(autostart=True, restart_sec=2.0, start_limit_interval_sec=10.0)
async def read_sensor(config: SensorConfig, context: taskloom.Context) -> None:
    """Read a (simulated) sensor every `period` seconds and log the value."""
    while True:
        value = 20.0 + random.random()
        context.logger.info("channel %s: %.2f", config.channel, value)
        await context.sleep(config.period)  # a stop interrupts the sleep at once


@taskloom.service
def heartbeat(context: taskloom.Context) -> None:
    """A plain function runs in a thread of its own and sees the stop request."""
    beats = 0
    while not context.wait_cancelled(1.0):  # True as soon as the service is stopped
        beats += 1
        context.logger.info("beat %d", beats)
