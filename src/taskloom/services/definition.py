"""Defining services: the `service` decorator, the `Service` class form and their options.

A service is a long-running loop (reading a sensor, polling a device) that a `Supervisor`
starts, stops and restarts under systemd-like options. It takes no inputs; like a task it
may ask for the special parameters `config`, `state` and `context`.
"""

from __future__ import annotations

import difflib
import inspect
import re
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, ClassVar, overload

from ..context import Context
from ..exceptions import TaskDefinitionError
from ..policies import RestartPolicy
from ..tasks.signature import SpecialParams, inspect_function

if TYPE_CHECKING:
    from .instances import LiveInstance, ServiceClass

__all__ = [
    "FunctionService",
    "Service",
    "ServiceDefinition",
    "ServiceOptions",
    "definitions_of",
    "service",
    "services_in_module",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceOptions:
    """How a service is started and restarted (pydase's names and defaults).

    - `autostart`: started by `Supervisor.start_autostart()` (what `taskloom serve` calls).
    - `restart_on_exception`, `restart_sec`, `start_limit_interval_sec`,
      `start_limit_burst`, `exit_on_failure`: see `RestartPolicy`.
    - `stop_timeout`: seconds a stop waits for the loop to end before giving up on it.
    """

    autostart: bool = False
    restart_on_exception: bool = True
    restart_sec: float = 1.0
    start_limit_interval_sec: float | None = None
    start_limit_burst: int = 3
    exit_on_failure: bool = False
    stop_timeout: float = 10.0

    @property
    def restart_policy(self) -> RestartPolicy:
        return RestartPolicy(
            restart_on_exception=self.restart_on_exception,
            restart_sec=self.restart_sec,
            start_limit_interval_sec=self.start_limit_interval_sec,
            start_limit_burst=self.start_limit_burst,
            exit_on_failure=self.exit_on_failure,
        )


OPTION_NAMES: frozenset[str] = frozenset(f.name for f in fields(ServiceOptions))
DESCRIPTIVE_OPTIONS = frozenset({"name", "description"})

# option -> (accepted types, whether None is accepted, minimum, minimum is exclusive, wording)
_CHECKS: dict[str, tuple[tuple[type, ...], bool, float | None, bool, str]] = {
    "autostart": ((bool,), False, None, False, "True or False"),
    "restart_on_exception": ((bool,), False, None, False, "True or False"),
    "exit_on_failure": ((bool,), False, None, False, "True or False"),
    "restart_sec": ((int, float), False, 0.0, False, "a number of seconds >= 0"),
    "start_limit_interval_sec": ((int, float), True, 0.0, True, "a number of seconds > 0 or None"),
    "start_limit_burst": ((int,), False, 0.0, False, "an integer >= 0"),
    "stop_timeout": ((int, float), False, 0.0, False, "a number of seconds >= 0"),
}


def parse_service_options(service: str, options: Mapping[str, Any]) -> ServiceOptions:
    """Check service options; an unknown or ill-typed one fails here, at definition."""
    for key, value in options.items():
        if key not in OPTION_NAMES:
            names = sorted(OPTION_NAMES | DESCRIPTIVE_OPTIONS)
            close = difflib.get_close_matches(key, names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise TaskDefinitionError(
                f"service {service!r}: unknown option {key!r}{hint} "
                f"(known options: {', '.join(names)})"
            )
        types_, nullable, minimum, exclusive, expected = _CHECKS[key]
        if value is None and nullable:
            continue
        is_bool = isinstance(value, bool)
        wrong_type = not isinstance(value, types_) or (is_bool and bool not in types_)
        too_small = (
            not wrong_type
            and minimum is not None
            and (value <= minimum if exclusive else value < minimum)
        )
        if wrong_type or too_small:
            raise TaskDefinitionError(
                f"service {service!r}: option {key!r} expects {expected}, got {value!r}"
            )
    return ServiceOptions(**options)


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not name or len(name) > 200 or name.strip() != name:
        raise TaskDefinitionError(
            f"invalid service name {name!r}: use 1-200 characters, no outer spaces"
        )
    return name


def _specials_of(fn: Callable[..., Any], service: str) -> SpecialParams:
    """The special parameters of a service function; any other parameter is an error."""
    signature = inspect_function(fn, task=service)
    if signature.names:
        raise TaskDefinitionError(
            f"service {service!r}: parameter {signature.names[0]!r}: a service takes no inputs; "
            "its parameters may only be `config`, `state` and `context`"
        )
    if signature.specials.timestamp:
        raise TaskDefinitionError(
            f"service {service!r}: parameter 'timestamp': a service has no timestamp; "
            "use `context` or the clock"
        )
    return signature.specials


def _description_of(obj: Any) -> str | None:
    doc = inspect.getdoc(obj)
    return doc.strip().split("\n\n", 1)[0] if doc else None


class ServiceDefinition:
    """What a supervisor needs to know about a service: name, options and how to run it."""

    name: str
    description: str | None
    options: ServiceOptions
    specials: SpecialParams
    is_async: bool  # False: the loop runs in a thread of its own

    def same_as(self, other: ServiceDefinition) -> bool:
        return self is other


class FunctionService(ServiceDefinition):
    """A service made from a function with `@service`."""

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        options: ServiceOptions,
        name: str | None = None,
        description: str | None = None,
    ) -> None:
        if inspect.isasyncgenfunction(fn) or inspect.isgeneratorfunction(fn):
            raise TaskDefinitionError(
                f"service {name or fn.__name__!r}: a service is a plain or async function, "
                "not a generator"
            )
        self.fn = fn
        self.name = _check_name(name or getattr(fn, "__name__", None) or repr(fn))
        self.description = description or _description_of(fn)
        self.options = options
        self.specials = _specials_of(fn, self.name)
        self.is_async = inspect.iscoroutinefunction(fn)
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<service {self.name!r}>"

    def same_as(self, other: ServiceDefinition) -> bool:
        return self is other or (isinstance(other, FunctionService) and other.fn is self.fn)


class Service:
    """Base class of class-form services, in one of two forms.

    With `async def run(self)` (it may ask for `config`, `state` and `context` like a
    function service), and optionally `setup()` and `teardown()`: one service, named after
    the class in snake case; one instance is made per start; `teardown()` runs after
    `run()` however it ended, including on a stop. Options are class keywords:
    `class Poller(taskloom.Service, restart_sec=0.5): ...`.

    With methods marked `@taskloom.loop(...)` (pydase's form): each loop is a service
    named `ClassName.method` with its own options; one instance, made when the class is
    registered, is shared by its loops for as long as the process serves them, and its
    public attributes (annotated with a default, or assigned in `__init__`) are live:
    read and set from the CLI, the API, the clients and the dashboard while the loops run
    (see `services/instances.py`).
    """

    name: ClassVar[str | None] = None
    description: ClassVar[str | None] = None

    #: The start this instance executes (set by the supervisor before `setup`; a class
    #: with loops has no single start: a loop asks for `context` as a parameter).
    context: Context

    _taskloom_definition: ClassVar[ClassService | None] = None
    _taskloom_class: ClassVar[ServiceClass | None] = None

    def __init_subclass__(cls, **options: Any) -> None:
        super().__init_subclass__()
        from .instances import ServiceClass, loops_of  # built on this module

        loops = loops_of(cls)
        cls._taskloom_class = None
        if loops:
            if "run" in cls.__dict__:
                raise TaskDefinitionError(
                    f"service class {cls.__qualname__} defines `run` and loops "
                    f"({', '.join(loops)}): a class is one service with `run`, or loops"
                )
            if options:
                raise TaskDefinitionError(
                    f"service class {cls.__qualname__}: options go on each @loop(...), not "
                    f"on the class (got {', '.join(sorted(options))})"
                )
            cls._taskloom_definition = None
            cls._taskloom_class = ServiceClass(
                cls, name=str(cls.__dict__.get("name") or cls.__name__)
            )
            return
        label = cls.__dict__.get("name") or _snake(cls.__name__)
        parsed = parse_service_options(str(label), options)
        # A subclass without its own `run` is an abstract base for other services.
        cls._taskloom_definition = (
            ClassService(cls, options=parsed, name=str(label)) if "run" in cls.__dict__ else None
        )

    def __setattr__(self, name: str, value: Any) -> None:
        # An instance of a class with loops is live once registered: its attributes are
        # validated and the change is told (and saved) wherever it was made.
        live: LiveInstance | None = self.__dict__.get("_taskloom_live")
        if live is not None and name in live.attributes:
            live.assign(name, value)
        else:
            object.__setattr__(self, name, value)

    # Any signature may override this one: `run` asks for `config`, `state`, `context`.
    async def run(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError(f"{type(self).__name__} must define `async def run(self)`")

    async def setup(self) -> None:
        """Called before `run()` at each start."""

    async def teardown(self) -> None:
        """Called after `run()` at each start, however it ended."""


class ClassService(ServiceDefinition):
    """A service made from a `Service` subclass."""

    def __init__(self, cls: type[Service], *, options: ServiceOptions, name: str) -> None:
        self.cls = cls
        self.name = _check_name(name)
        self.description = cls.__dict__.get("description") or _description_of(cls)
        self.options = options
        run = cls.__dict__["run"]
        if not inspect.iscoroutinefunction(run):
            raise TaskDefinitionError(f"service {name!r}: `run` must be `async def run(self)`")
        # Bound to a placeholder, the signature loses `self` and keeps the annotations.
        self.specials = _specials_of(types.MethodType(run, object()), self.name)
        self.is_async = True

    def __repr__(self) -> str:
        return f"<service {self.name!r} ({self.cls.__qualname__})>"

    def same_as(self, other: ServiceDefinition) -> bool:
        return self is other or (isinstance(other, ClassService) and other.cls is self.cls)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def definitions_of(obj: ServiceDefinition | type[Service]) -> list[ServiceDefinition]:
    """The services of a decorated function or a `Service` subclass: one, or each loop of
    a class with loops."""
    if isinstance(obj, type) and issubclass(obj, Service) and obj._taskloom_class is not None:
        return list(obj._taskloom_class.loops)
    return [definition_of(obj)]


def definition_of(obj: ServiceDefinition | type[Service]) -> ServiceDefinition:
    """The definition of a decorated function or a `Service` subclass (the first loop of a
    class with loops; `definitions_of` gives them all)."""
    if isinstance(obj, ServiceDefinition):
        return obj
    if isinstance(obj, type) and issubclass(obj, Service):
        if obj._taskloom_class is not None and obj._taskloom_class.loops:
            return obj._taskloom_class.loops[0]
        if obj._taskloom_definition is None:
            raise TaskDefinitionError(
                f"service class {obj.__qualname__} defines no `run` and no @loop methods; "
                "it cannot be registered"
            )
        return obj._taskloom_definition
    raise TaskDefinitionError(
        f"{obj!r} is not a service: decorate a function with @service or subclass Service"
    )


@overload
def service(fn: Callable[..., Any], /) -> FunctionService: ...


@overload
def service(
    fn: None = None, /, **options: Any
) -> Callable[[Callable[..., Any]], FunctionService]: ...


def service(
    fn: Callable[..., Any] | None = None, /, **options: Any
) -> FunctionService | Callable[[Callable[..., Any]], FunctionService]:
    """Make a function a service, bare (`@service`) or with options.

    Options: `name`, `description` (default: the docstring summary) and those of
    `ServiceOptions`. A sync function runs in a thread of its own and sees a stop request
    through `context.cancelled` or `context.wait_cancelled(timeout)`.
    """

    def decorate(func: Callable[..., Any]) -> FunctionService:
        label = options.get("name") or getattr(func, "__name__", None) or repr(func)
        if isinstance(func, ServiceDefinition):
            raise TaskDefinitionError(
                f"service {label!r} is already a service; apply @service once"
            )
        rest = {k: v for k, v in options.items() if k not in DESCRIPTIVE_OPTIONS}
        parsed = parse_service_options(str(label), rest)
        return FunctionService(
            func, options=parsed, name=options.get("name"), description=options.get("description")
        )

    if fn is not None:
        if options:
            raise TaskDefinitionError("use @service(...) with keyword options, or bare @service")
        return decorate(fn)
    return decorate


def services_in_module(module: types.ModuleType) -> list[ServiceDefinition]:
    """Every service defined in `module` (not merely imported into it), in definition order."""
    found: list[ServiceDefinition] = []
    for value in vars(module).values():
        if isinstance(value, FunctionService) and value.fn.__module__ == module.__name__:
            found.append(value)
        elif (
            isinstance(value, type)
            and issubclass(value, Service)
            and value.__module__ == module.__name__
        ):
            if value._taskloom_class is not None:
                found.extend(value._taskloom_class.loops)
            elif value._taskloom_definition is not None:
                found.append(value._taskloom_definition)
    return found
