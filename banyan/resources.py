"""What a task asks for and what a worker offers: cores, memory, GPUs, custom resources.

``Resources`` is one shape for both sides: a task's ``requested_resources`` and a
worker's capacity (or its free share). Any key other than ``cores``, ``memory``
and ``gpus`` is a named custom resource, such as licences or ``scratch_gb``.
Errors are reported at the offending key (``memory``, ``gpus.0.memory``,
``licences``) so the server can answer 422 with the field named.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Final

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidatorFunctionWrapHandler,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from banyan.units import Cores, Memory

MAX_GPUS: Final = 64
MAX_CUSTOM_RESOURCES: Final = 32
MAX_CUSTOM_AMOUNT: Final = 1e15  # floats are exact integers up to 2**53 ≈ 9e15
CUSTOM_NAME_PATTERN: Final = r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$"
COMPUTE_CAPABILITY_PATTERN: Final = r"^[0-9]{1,2}\.[0-9]{1,2}$"
BUILTIN_RESOURCES: Final = frozenset({"cores", "memory", "gpus"})

# Names that are almost surely a typo for a built-in resource: as custom
# resources no worker would ever offer them, and the task would wait forever.
_LOOKALIKES: Final = {
    "core": "cores",
    "cores": "cores",
    "cpu": "cores",
    "cpus": "cores",
    "mem": "memory",
    "memory": "memory",
    "gpu": "gpus",
    "gpus": "gpus",
}
# Free amounts come from subtracting fractional requests (0.1 + 0.2 != 0.3), so
# comparisons allow a relative rounding error.
_REL_TOLERANCE: Final = 1e-9


def _compute_capability(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        # 7 → "7.0", 7.5 → "7.5"; write 7.10 as a string, a float cannot keep the 0.
        # The range test comes first: it refuses NaN and keeps float() from overflowing.
        text = repr(float(value)) if 0 <= value < 100 else ""
    elif isinstance(value, str):
        text = value if "." in value else value + ".0"
    else:
        text = ""
    if not re.fullmatch(COMPUTE_CAPABILITY_PATTERN, text):
        raise ValueError(
            f'invalid compute capability {value!r:.40}: expected major.minor such as "7.0"'
        )
    return text


ComputeCapability = Annotated[
    str,
    StringConstraints(pattern=COMPUTE_CAPABILITY_PATTERN),
    BeforeValidator(_compute_capability),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": r"^[0-9]{1,2}(?:\.[0-9]{1,2})?$"},
                {"type": "number", "minimum": 0, "maximum": 99.99},
            ],
            "description": 'CUDA compute capability, e.g. "7.0" or 8.6',
        },
        mode="validation",
    ),
]


class GpuSpec(BaseModel):
    """One GPU a task needs, with optional minimum memory and compute capability."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    memory: Memory | None = Field(default=None, description="minimum GPU memory")
    min_compute_capability: ComputeCapability | None = None

    def canonical(self) -> dict[str, Any]:
        """The stored form: only the requirements that were given."""
        return self.model_dump(exclude_none=True)


def _custom_name(name: Any) -> str:
    if not isinstance(name, str) or not re.fullmatch(CUSTOM_NAME_PATTERN, name):
        raise ValueError(
            f"invalid resource name {name!r:.80}: expected a letter or '_' followed by up to"
            " 63 letters, digits, '_', '.' or '-'"
        )
    meant = _LOOKALIKES.get(name.lower())
    if meant is not None:
        raise ValueError(f"{name!r} is not a custom resource: did you mean {meant!r}?")
    return name


def _custom_amount(value: Any) -> float:
    # Checked here rather than by pydantic's float so that "2", true and huge ints
    # (which float() would overflow on) get one clear message.
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if not is_number or not 0 <= value <= MAX_CUSTOM_AMOUNT:
        raise ValueError(
            f"a custom resource amount must be a number from 0 to {MAX_CUSTOM_AMOUNT:g},"
            f" got {value!r:.40}"
        )
    return float(value)


CustomName = Annotated[
    str,
    BeforeValidator(_custom_name),
    WithJsonSchema({"type": "string", "pattern": CUSTOM_NAME_PATTERN}),
]
CustomAmount = Annotated[
    float,
    BeforeValidator(_custom_amount),
    WithJsonSchema({"type": "number", "minimum": 0, "maximum": MAX_CUSTOM_AMOUNT}),
]
GpuCount = Annotated[int, Field(strict=True, ge=0, le=MAX_GPUS)]
GpuList = Annotated[list[GpuSpec], Field(max_length=MAX_GPUS)]

_GPU_COUNT: Final = TypeAdapter(GpuCount)
_GPU_LIST: Final = TypeAdapter(GpuList)


class Resources(BaseModel):
    """A resource request (or a capacity): the defaults ask for one core and nothing else."""

    model_config = ConfigDict(
        extra="allow",
        frozen=True,
        json_schema_extra={
            "propertyNames": {"pattern": CUSTOM_NAME_PATTERN},
            "maxProperties": len(BUILTIN_RESOURCES) + MAX_CUSTOM_RESOURCES,
        },
    )
    # Typing the extras makes pydantic validate every custom key and amount in
    # place (errors located at the key) and publish them as additionalProperties.
    __pydantic_extra__: dict[CustomName, CustomAmount] = Field(init=False)

    cores: Cores = 1.0
    memory: Memory = 0
    gpus: GpuCount | GpuList = Field(default=0, description="a count, or one spec per GPU")

    @model_validator(mode="before")
    @classmethod
    def _few_custom(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            custom = [key for key in data if key not in BUILTIN_RESOURCES]
            if len(custom) > MAX_CUSTOM_RESOURCES:
                raise ValueError(
                    f"at most {MAX_CUSTOM_RESOURCES} custom resources, got {len(custom)}"
                )
        return data

    @field_validator("gpus", mode="wrap")
    @classmethod
    def _gpus(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> int | list[GpuSpec]:
        # Dispatch on the input's shape ourselves: pydantic's union would report a
        # bad spec twice, under "gpus.int" and "gpus.list[GpuSpec].0", rather than
        # at "gpus.0". Errors from the adapters keep their location below "gpus".
        # (A wrap validator, unused handler and all, keeps the union's JSON schema.)
        if isinstance(value, list | tuple):
            return _GPU_LIST.validate_python(value)
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # JSON Schema counts 2.0 as an integer, so we do too
        if isinstance(value, int) and not isinstance(value, bool):
            return _GPU_COUNT.validate_python(value)
        raise ValueError(
            f"invalid gpus {value!r:.40}: expected a count such as 2, or a list such as"
            ' [{"memory": "8 GiB", "min_compute_capability": "7.0"}]'
        )

    @property
    def gpu_count(self) -> int:
        """How many GPUs, whether given as a count or as a list of specs."""
        return self.gpus if isinstance(self.gpus, int) else len(self.gpus)

    @property
    def custom(self) -> dict[str, float]:
        """The named custom resources and their amounts."""
        return dict(self.__pydantic_extra__ or {})

    def canonical(self) -> dict[str, Any]:
        """The form stored and returned by the server: plain JSON, integers where integral."""
        gpus: int | list[dict[str, Any]] = (
            self.gpus if isinstance(self.gpus, int) else [g.canonical() for g in self.gpus]
        )
        form: dict[str, Any] = {
            "cores": _plain(self.cores),
            "memory": self.memory,
            "gpus": gpus,
        }
        form.update((name, _plain(amount)) for name, amount in self.custom.items())
        return form


def _plain(number: float) -> int | float:
    return int(number) if number.is_integer() else number


def merge_resources(
    current: Mapping[str, Any] | Resources, patch: Mapping[str, Any] | Resources
) -> Resources:
    """Apply a PATCH to a resource request, as Eve merges nested objects.

    Keys in ``patch`` replace those in ``current`` and the others are kept; a
    ``null`` removes a custom resource and resets ``cores``/``memory``/``gpus`` to
    their defaults. Values are replaced whole (``{"count": 2, "percent": 50}`` is
    one value). Raises ``pydantic.ValidationError`` if the result is invalid.
    """
    if isinstance(current, Resources):
        current = current.canonical()
    if isinstance(patch, Resources):
        patch = patch.canonical()
    if not isinstance(patch, Mapping):
        # Let pydantic report "not an object" like any other validation error.
        return Resources.model_validate(patch)
    merged = {key: value for key, value in current.items() if key not in patch}
    merged.update(patch)
    return Resources.model_validate(
        {key: value for key, value in merged.items() if value is not None}
    )


def _at_most(wanted: float, available: float) -> bool:
    return wanted <= available + _REL_TOLERANCE * max(1.0, abs(available))


@dataclass(frozen=True, slots=True)
class Amounts:
    """A ``Resources`` as plain numbers (GPU specs reduced to a count): what
    packing adds up and compares, cheaply, with no model per candidate.

    The one fit rule lives here (``fits_in``), used by the server's claim
    policy, its pending reasons and the worker's free share alike."""

    cores: float = 0.0
    memory: int = 0
    gpus: int = 0
    custom: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, resources: Resources) -> Amounts:
        return cls(resources.cores, resources.memory, resources.gpu_count, resources.custom)

    def fits_in(self, free: Amounts) -> bool:
        """Cores, memory, GPU count and every custom resource asked for (a custom
        resource ``free`` lacks counts as 0); fractional amounts allow rounding."""
        free_custom = free.custom
        return (
            _at_most(self.cores, free.cores)
            and self.memory <= free.memory
            and self.gpus <= free.gpus
            and all(_at_most(v, free_custom.get(k, 0.0)) for k, v in self.custom.items())
        )

    def minus(self, used: Amounts) -> Amounts:
        """What is left once ``used`` is taken (never below zero)."""
        custom = dict(self.custom)
        for name, amount in used.custom.items():
            custom[name] = max(0.0, custom.get(name, 0.0) - amount)
        return Amounts(
            max(0.0, self.cores - used.cores),
            max(0, self.memory - used.memory),
            max(0, self.gpus - used.gpus),
            custom,
        )

    @property
    def no_cores_left(self) -> bool:
        return self.cores <= _REL_TOLERANCE

    def as_resources(self) -> Resources:
        return Resources.model_validate(
            {"cores": self.cores, "memory": self.memory, "gpus": self.gpus, **self.custom}
        )


def free_share(
    capacity: Resources, running: Iterable[Resources], *, gpus: int | None = None
) -> Amounts:
    """A worker's free share: its capacity less what its attempts hold (``gpus``:
    the free GPU count when the caller tracks GPUs one by one, as the worker does)."""
    free = Amounts.of(capacity)
    for request in running:
        free = free.minus(Amounts.of(request))
    if gpus is not None:
        free = Amounts(free.cores, free.memory, gpus, free.custom)
    return free


def fits(request: Resources, free: Resources) -> bool:
    """Whether ``request`` fits in ``free`` (``Amounts.fits_in``).

    Only the number of GPUs is compared: matching each requested spec (memory,
    compute capability) to a physical GPU is the worker's job, as only it knows
    which of its GPUs are still free.
    """
    return Amounts.of(request).fits_in(Amounts.of(free))
