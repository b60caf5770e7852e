"""Service classes as pydase writes them: live attributes and several loops on one `self`.

```python
class SensorService(taskloom.Service):
    readout_frequency: float = 1.0

    @taskloom.loop(autostart=True)
    async def read_sensor_data(self) -> None:
        while True:
            self._process_data(self._read_from_sensor())
            await asyncio.sleep(1 / self.readout_frequency)
```

Each method marked `@loop` is a service of its own, named `SensorService.read_sensor_data`,
under its own restart policy. The class is made once (`ServiceClass.make`) when a process
registers it, and its loops share that instance for as long as the process serves them.
Its public attributes (`attributes.py`) are live: a `LiveInstance` holds the instance,
validates every change, from outside (`Supervisor.set_attributes`) or from the class's own
code (`self.readout_frequency = 2.0` in a loop), and tells the supervisor of it.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, overload

from ..exceptions import TaskDefinitionError
from .attributes import AttributeSet, attributes_of
from .definition import (
    DESCRIPTIVE_OPTIONS,
    ServiceDefinition,
    ServiceOptions,
    _check_name,
    _description_of,
    _specials_of,
    parse_service_options,
)
from .errors import ServiceError

if TYPE_CHECKING:
    from .definition import Service

__all__ = ["LiveInstance", "LoopMethod", "LoopService", "ServiceClass", "loop"]

#: Who changed an attribute when the class's own code assigned it.
OWN_CODE = "service"

Changed = Callable[["LiveInstance", dict[str, Any], float, str], None]


class LoopMethod:
    """A method marked `@loop`: the function and its options, until its class is made.

    On an instance it is the plain bound method (`self.read()` calls it); the supervisor
    runs it as the loop `ClassName.method`.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        options: ServiceOptions,
        description: str | None,
    ) -> None:
        if inspect.isasyncgenfunction(fn) or inspect.isgeneratorfunction(fn):
            raise TaskDefinitionError(
                f"loop {fn.__qualname__!r}: a loop is a plain or async method, not a generator"
            )
        self.fn = fn
        self.options = options
        self.description = description
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn

    def __set_name__(self, owner: type, name: str) -> None:
        self.method = name

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        return self if instance is None else self.fn.__get__(instance, owner)

    def __repr__(self) -> str:
        return f"<loop {self.fn.__qualname__}>"


@overload
def loop(fn: Callable[..., Any], /) -> LoopMethod: ...


@overload
def loop(fn: None = None, /, **options: Any) -> Callable[[Callable[..., Any]], LoopMethod]: ...


def loop(
    fn: Callable[..., Any] | None = None, /, **options: Any
) -> LoopMethod | Callable[[Callable[..., Any]], LoopMethod]:
    """Mark a method of a `Service` class as one of its loops, bare or with options.

    The options are pydase's `@task` options (`autostart`, `restart_on_exception`,
    `restart_sec`, `start_limit_interval_sec`, `start_limit_burst`, `exit_on_failure`),
    with `stop_timeout` and `description`; each loop has its own. A loop takes `self` and
    may ask for `context` (a `taskloom.Context`); it reads and sets the instance's
    attributes, which every loop of the instance shares.
    """

    def decorate(func: Callable[..., Any]) -> LoopMethod:
        label = getattr(func, "__qualname__", None) or repr(func)
        if isinstance(func, LoopMethod):
            raise TaskDefinitionError(f"loop {label!r} is already a loop; apply @loop once")
        if "name" in options:
            raise TaskDefinitionError(
                f"loop {label!r}: a loop is named after its class and method "
                "(ClassName.method); `name` is not an option of @loop"
            )
        rest = {k: v for k, v in options.items() if k not in DESCRIPTIVE_OPTIONS}
        parsed = parse_service_options(str(label), rest)
        return LoopMethod(func, options=parsed, description=options.get("description"))

    if fn is not None:
        if options:
            raise TaskDefinitionError("use @loop(...) with keyword options, or bare @loop")
        return decorate(fn)
    return decorate


def loops_of(cls: type) -> dict[str, LoopMethod]:
    """The loops of a class, its bases' included (a subclass's own override them)."""
    found: dict[str, LoopMethod] = {}
    for klass in reversed(cls.__mro__):
        for name, value in vars(klass).items():
            if isinstance(value, LoopMethod):
                found[name] = value
            elif name in found:
                del found[name]  # overridden by a plain method: no longer a loop
    return found


class ServiceClass:
    """A `Service` subclass with loops: its name (the class's, or its `name`), its loops,
    and how its one instance is made."""

    def __init__(self, cls: type[Service], *, name: str) -> None:
        self.cls = cls
        self.name = _check_name(name)
        self.description = cls.__dict__.get("description") or _description_of(cls)
        self.loops = [LoopService(self, method, marked) for method, marked in loops_of(cls).items()]

    def make(self) -> tuple[Service, AttributeSet]:
        """The instance (its `__init__` called with no arguments) and its attributes."""
        try:
            instance = self.cls()
        except Exception as exc:
            raise ServiceError(
                f"service class {self.name!r} could not be made: {type(exc).__name__}: {exc} "
                "(its __init__ is called with no arguments when it is registered)"
            ) from exc
        return instance, attributes_of(self.name, self.cls, instance)

    def __repr__(self) -> str:
        return f"<service class {self.name!r} ({self.cls.__qualname__})>"


class LoopService(ServiceDefinition):
    """One loop of a service class, a service of its own: `ClassName.method`."""

    def __init__(self, owner: ServiceClass, method: str, marked: LoopMethod) -> None:
        self.owner = owner
        self.method = method
        self.fn = marked.fn
        self.name = _check_name(f"{owner.name}.{method}")
        self.description = marked.description or _description_of(marked.fn)
        self.options = marked.options
        # Bound to a placeholder, the signature loses `self` and keeps the annotations.
        self.specials = _specials_of(marked.fn.__get__(object()), self.name)
        if self.specials.config is not None or self.specials.state is not None:
            raise TaskDefinitionError(
                f"service {self.name!r}: a loop of a service class takes no `config` or "
                "`state`; keep what it needs in attributes of the class"
            )
        self.is_async = inspect.iscoroutinefunction(marked.fn)

    def __repr__(self) -> str:
        return f"<service {self.name!r} (loop of {self.owner.cls.__qualname__})>"

    def same_as(self, other: ServiceDefinition) -> bool:
        return self is other or (
            isinstance(other, LoopService)
            and other.owner.cls is self.owner.cls
            and other.method == self.method
        )


class LiveInstance:
    """The one instance of a service class in this process, and its live attributes.

    `set` and the instance's own assignments validate each value, set it on the instance
    and call `changed(instance, values, at, by)` with the JSON forms, from the thread that
    made the change. `updated` says when and by whom each attribute was last set (None:
    it holds its default).
    """

    def __init__(
        self,
        definition: ServiceClass,
        instance: Service,
        attributes: AttributeSet,
        *,
        clock: Callable[[], float],
        changed: Changed,
    ) -> None:
        self.definition = definition
        self.instance = instance
        self.attributes = attributes
        self.updated: dict[str, tuple[float, str] | None] = dict.fromkeys(attributes.names)
        self._clock = clock
        self._changed = changed
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.definition.name

    def restore(self, name: str, value: Any, *, at: float, by: str) -> None:
        """Take a value kept from an earlier process (already validated)."""
        object.__setattr__(self.instance, name, value)
        self.updated[name] = (at, by)

    def bind(self) -> None:
        """From now on, the instance's own assignments to its attributes are live."""
        for name in self.attributes.names:
            if name not in vars(self.instance):
                # A class-level default (say a pydantic Field): the instance holds the value.
                object.__setattr__(self.instance, name, self.attributes.default(name))
        object.__setattr__(self.instance, "_taskloom_live", self)

    def set(self, values: Mapping[str, Any], *, by: str) -> dict[str, Any]:
        """Validate every value (all or none are set), set them, tell of the change;
        return their JSON forms."""
        checked = self.attributes.check(values)
        return self._apply(checked, by=by)

    def assign(self, name: str, value: Any) -> None:
        """The instance's own code set `name` (validated as a change from outside is)."""
        self._apply({name: self.attributes.checked(name, value)}, by=OWN_CODE)

    def _apply(self, checked: Mapping[str, tuple[Any, Any]], *, by: str) -> dict[str, Any]:
        """Set each (value, JSON form) and tell of the change; return the JSON forms."""
        if not checked:
            return {}
        with self._lock:  # loops in threads and the event loop may set at once
            at = self._clock()
            for name, (value, _json) in checked.items():
                object.__setattr__(self.instance, name, value)
                self.updated[name] = (at, by)
            dumped = {name: form for name, (_value, form) in checked.items()}
            self._changed(self, dumped, at, by)
        return dumped

    def values(self) -> dict[str, Any]:
        """Every attribute's JSON form as the instance holds it now."""
        return self.attributes.dump_all(self.instance)
