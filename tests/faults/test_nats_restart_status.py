"""The status of a deployment whose NATS server died mid-stream says what was lost.

Messages on their way when the server was killed never arrive; the deployment's status
must account for them (counted as dropped, or said in an error), not drop them silently.
"""

from __future__ import annotations

import pytest
from test_nats_restart import restart_mid_stream


@pytest.mark.timeout(90)
async def test_what_a_nats_restart_lost_is_in_the_status() -> None:
    outcome = await restart_mid_stream()
    said = [stage for stage in outcome.status.stages if stage.dropped or stage.last_error]
    assert outcome.lost == 0 or said, (
        f"{outcome.lost} of {outcome.published} messages never arrived (the server was "
        f"killed at message {outcome.killed_at}, back at {outcome.restarted_at}) and the "
        f"status says nothing: {outcome.status.as_dict()}"
    )
