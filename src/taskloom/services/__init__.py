"""Services: long-running loops under systemd-like restart policies.

```python
@taskloom.services.service(restart_sec=2.0, start_limit_interval_sec=10.0,
                           start_limit_burst=5, exit_on_failure=True)
async def read_sensor(config: SensorConfig, context: taskloom.Context) -> None:
    while True:
        context.logger.info("read %s", read())
        await context.sleep(config.period)
```

A service that raises is restarted after `restart_sec` while `RestartPolicy` allows it:
with `start_limit_interval_sec` set, at most `start_limit_burst` restarts may fall within
any window of that many seconds ending at the restart, the window's old end excluded. So
with pydase's example (restart_sec=2, interval=10, burst=5) a service that fails at once
restarts at 2, 4, 6, 8, 10, 12, ...: the restart at 12 counts 4, 6, 8, 10 (not 2) and is
allowed, for ever. With restart_sec=1 it restarts five times, at 1 to 5, then the sixth
restart (at 6) would be the sixth in (-4, 6] and the service fails for good. A failed
`exit_on_failure` service sets `Supervisor.exit_code` to a non-zero code and wakes
`Supervisor.wait_exit()`, so the serving process can exit non-zero.

A `Service` class may also be written as pydase writes its services: public attributes
and several `@loop` methods sharing one instance; its attributes are live
(`instances.py`, `attributes.py`).
"""

from .definition import (
    FunctionService,
    Service,
    ServiceDefinition,
    ServiceOptions,
    definitions_of,
    service,
    services_in_module,
)
from .errors import (
    AttributeValidationError,
    ServiceError,
    ServiceRunningError,
    UnknownServiceError,
)
from .instances import LoopService, ServiceClass, loop
from .status import (
    AttributeChange,
    ExitReason,
    ServiceAttributes,
    ServiceStart,
    ServiceState,
    ServiceStatus,
)
from .supervisor import EXIT_SERVICE_FAILED, Supervisor

__all__ = (
    "EXIT_SERVICE_FAILED",
    "AttributeChange",
    "AttributeValidationError",
    "ExitReason",
    "FunctionService",
    "LoopService",
    "Service",
    "ServiceAttributes",
    "ServiceClass",
    "ServiceDefinition",
    "ServiceError",
    "ServiceOptions",
    "ServiceRunningError",
    "ServiceStart",
    "ServiceState",
    "ServiceStatus",
    "Supervisor",
    "UnknownServiceError",
    "definitions_of",
    "loop",
    "service",
    "services_in_module",
)
