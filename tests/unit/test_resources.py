"""Resource requests and capacities: validation, error locations, canonical form,
PATCH merging and the fit test."""

from __future__ import annotations

import math
import re
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from pydantic import ValidationError

from banyan.resources import (
    CUSTOM_NAME_PATTERN,
    MAX_CUSTOM_AMOUNT,
    MAX_CUSTOM_RESOURCES,
    MAX_GPUS,
    GpuSpec,
    Resources,
    fits,
    merge_resources,
)
from banyan.units import MEMORY_PATTERN

GIB = 1024**3
DEFAULT = {"cores": 1, "memory": 0, "gpus": 0}


def _locs(data: Any) -> list[tuple[int | str, ...]]:
    with pytest.raises(ValidationError) as info:
        Resources.model_validate(data)
    return [error["loc"] for error in info.value.errors()]


# --- accepted forms and the canonical form ---------------------------------------


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ({}, DEFAULT),
        ({"cores": 2}, {**DEFAULT, "cores": 2}),
        ({"cores": 2.0}, {**DEFAULT, "cores": 2}),
        ({"cores": 0.5}, {**DEFAULT, "cores": 0.5}),
        ({"cores": 0}, {**DEFAULT, "cores": 0}),
        ({"cores": {"count": 2, "percent": 50}}, {**DEFAULT, "cores": 1}),
        ({"cores": {"count": 3, "percent": 50}}, {**DEFAULT, "cores": 1.5}),
        ({"cores": {"count": 4}}, {**DEFAULT, "cores": 4}),
        ({"memory": "1 GiB"}, {**DEFAULT, "memory": GIB}),
        ({"memory": "2GB"}, {**DEFAULT, "memory": 2_000_000_000}),
        ({"memory": 1024}, {**DEFAULT, "memory": 1024}),
        ({"memory": 1024.0}, {**DEFAULT, "memory": 1024}),
        ({"gpus": 2}, {**DEFAULT, "gpus": 2}),
        ({"gpus": 2.0}, {**DEFAULT, "gpus": 2}),
        ({"gpus": MAX_GPUS}, {**DEFAULT, "gpus": MAX_GPUS}),
        ({"gpus": []}, {**DEFAULT, "gpus": []}),
        ({"gpus": [{}]}, {**DEFAULT, "gpus": [{}]}),
        (
            {"gpus": [{"memory": "8 GiB", "min_compute_capability": "7.0"}]},
            {**DEFAULT, "gpus": [{"memory": 8 * GIB, "min_compute_capability": "7.0"}]},
        ),
        (
            {"gpus": [{"min_compute_capability": 7.5}, {"memory": None}]},
            {**DEFAULT, "gpus": [{"min_compute_capability": "7.5"}, {}]},
        ),
        ({"licences": 2}, {**DEFAULT, "licences": 2}),
        ({"licences": 2.0}, {**DEFAULT, "licences": 2}),
        ({"scratch_gb": 1.5}, {**DEFAULT, "scratch_gb": 1.5}),
        ({"_private": 0}, {**DEFAULT, "_private": 0}),
        ({"a.b-c_D9": 1}, {**DEFAULT, "a.b-c_D9": 1}),
        ({"x" * 64: 1}, {**DEFAULT, "x" * 64: 1}),
        ({"big": MAX_CUSTOM_AMOUNT}, {**DEFAULT, "big": int(MAX_CUSTOM_AMOUNT)}),
        (
            {"cores": 4, "memory": "512 MiB", "gpus": 1, "fpga": 1},
            {"cores": 4, "memory": 512 * 1024**2, "gpus": 1, "fpga": 1},
        ),
    ],
)
def test_accepted_forms_and_canonical(given: dict[str, Any], canonical: dict[str, Any]) -> None:
    resources = Resources.model_validate(given)
    assert resources.canonical() == canonical
    # Integral amounts are stored as ints, the rest as floats.
    for key, value in resources.canonical().items():
        if key != "gpus":
            assert type(value) is (int if float(value).is_integer() else float)
    # The canonical form is itself a valid input that means the same thing.
    assert Resources.model_validate(resources.canonical()) == resources


def test_defaults_ask_for_one_core_and_nothing_else() -> None:
    resources = Resources()
    assert (resources.cores, resources.memory, resources.gpus) == (1.0, 0, 0)
    assert resources.custom == {}
    assert resources.gpu_count == 0
    assert resources.canonical() == DEFAULT


def test_validates_from_json() -> None:
    resources = Resources.model_validate_json(
        '{"cores": 0.5, "memory": "1 GiB", "gpus": [{"memory": "8 GiB"}], "licences": 3}'
    )
    assert resources.canonical() == {
        "cores": 0.5,
        "memory": GIB,
        "gpus": [{"memory": 8 * GIB}],
        "licences": 3,
    }


def test_properties() -> None:
    resources = Resources.model_validate({"gpus": [{}, {}, {}], "licences": 2, "scratch": 0.5})
    assert resources.gpu_count == 3
    assert resources.custom == {"licences": 2.0, "scratch": 0.5}
    assert Resources.model_validate({"gpus": 5}).gpu_count == 5


def test_method_and_attribute_names_are_fine_as_custom_resources() -> None:
    resources = Resources.model_validate({"canonical": 1, "custom": 2, "model_fields": 3})
    assert resources.custom == {"canonical": 1.0, "custom": 2.0, "model_fields": 3.0}
    assert resources.canonical()["custom"] == 2


def test_resources_are_immutable() -> None:
    resources = Resources()
    with pytest.raises(ValidationError):
        resources.cores = 2  # type: ignore[misc]


@pytest.mark.parametrize(
    ("value", "expected"),
    [("7.0", "7.0"), ("7", "7.0"), ("8.6", "8.6"), ("12.1", "12.1"), (7, "7.0"), (7.5, "7.5")],
)
def test_compute_capability_is_normalised(value: Any, expected: str) -> None:
    assert GpuSpec.model_validate({"min_compute_capability": value}).min_compute_capability == (
        expected
    )


@pytest.mark.parametrize(
    "value",
    ["7.123", "abc", "7.", ".5", "", "v7.0", "7.0 ", "100.0", True, -1, 100, math.nan, [7], {}],
)
def test_compute_capability_rejects(value: Any) -> None:
    with pytest.raises(ValidationError) as info:
        GpuSpec.model_validate({"min_compute_capability": value})
    assert [e["loc"] for e in info.value.errors()] == [("min_compute_capability",)]


# --- rejected forms and where the error points ---------------------------------


@pytest.mark.parametrize(
    ("data", "loc"),
    [
        ({"memory": "12 XB"}, ("memory",)),
        ({"memory": -1}, ("memory",)),
        ({"memory": True}, ("memory",)),
        ({"memory": None}, ("memory",)),
        ({"memory": [1]}, ("memory",)),
        ({"memory": 2**63}, ("memory",)),
        ({"cores": -1}, ("cores",)),
        ({"cores": "2"}, ("cores",)),
        ({"cores": True}, ("cores",)),
        ({"cores": math.nan}, ("cores",)),
        ({"cores": {"count": 2, "percent": 150}}, ("cores",)),
        ({"cores": {"count": 2, "share": 1}}, ("cores",)),
        ({"gpus": -1}, ("gpus",)),
        ({"gpus": MAX_GPUS + 1}, ("gpus",)),
        ({"gpus": True}, ("gpus",)),
        ({"gpus": 1.5}, ("gpus",)),
        ({"gpus": "2"}, ("gpus",)),
        ({"gpus": None}, ("gpus",)),
        ({"gpus": {"count": 2}}, ("gpus",)),
        ({"gpus": [{}] * (MAX_GPUS + 1)}, ("gpus",)),
        ({"gpus": [{}, 3]}, ("gpus", 1)),
        ({"gpus": [{"memory": "8 XiB"}]}, ("gpus", 0, "memory")),
        (
            {"gpus": [{}, {"min_compute_capability": "7.123"}]},
            ("gpus", 1, "min_compute_capability"),
        ),
        ({"gpus": [{"min_compute_capability": "x"}]}, ("gpus", 0, "min_compute_capability")),
        ({"gpus": [{"vendor": "nvidia"}]}, ("gpus", 0, "vendor")),
        ({"licences": "two"}, ("licences",)),
        ({"licences": None}, ("licences",)),
        ({"licences": True}, ("licences",)),
        ({"licences": -1}, ("licences",)),
        ({"licences": math.inf}, ("licences",)),
        ({"licences": math.nan}, ("licences",)),
        ({"licences": MAX_CUSTOM_AMOUNT * 2}, ("licences",)),
        ({"licences": 10**400}, ("licences",)),
        ({"licences": [1]}, ("licences",)),
        ({"licences": {"count": 1}}, ("licences",)),
        ({"1licence": 1}, ("1licence",)),
        ({"has space": 1}, ("has space",)),
        ({"": 1}, ("",)),
        ({"x" * 65: 1}, ("x" * 65,)),
        ({"caf\u00e9": 1}, ("caf\u00e9",)),
        ({"Cores": 2}, ("Cores",)),
        ({"MEMORY": 1}, ("MEMORY",)),
        ({"cpus": 2}, ("cpus",)),
        ({"gpu": 1}, ("gpu",)),
    ],
)
def test_errors_are_located_at_the_field(data: dict[str, Any], loc: tuple[Any, ...]) -> None:
    assert _locs(data) == [loc]


def test_errors_of_several_fields_are_all_reported() -> None:
    locs = _locs({"memory": "lots", "gpus": [{"memory": "x"}], "licences": "two"})
    assert sorted(map(str, locs)) == sorted(
        map(str, [("memory",), ("gpus", 0, "memory"), ("licences",)])
    )


def test_json_errors_are_located_too() -> None:
    with pytest.raises(ValidationError) as info:
        Resources.model_validate_json('{"gpus": [{"min_compute_capability": "seven"}]}')
    assert info.value.errors()[0]["loc"] == ("gpus", 0, "min_compute_capability")


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"licences": "two"}, "custom resource amount must be a number"),
        ({"1x": 1}, "invalid resource name '1x'"),
        ({"CPUS": 1}, "did you mean 'cores'"),
        ({"gpus": "2"}, "expected a count such as 2"),
        ({"memory": "12 XB"}, "invalid memory '12 XB'"),
    ],
)
def test_error_messages_are_clear(data: dict[str, Any], words: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(words)):
        Resources.model_validate(data)


def test_at_most_32_custom_resources() -> None:
    many = {f"r{i}": 1 for i in range(MAX_CUSTOM_RESOURCES)}
    assert len(Resources.model_validate(many).custom) == MAX_CUSTOM_RESOURCES
    with pytest.raises(ValidationError, match="at most 32 custom resources"):
        Resources.model_validate({**many, "one_more": 1})


@pytest.mark.parametrize("data", [None, 5, "cores=2", [{"cores": 1}], True])
def test_not_an_object(data: Any) -> None:
    assert _locs(data) == [()]


# --- JSON schema -----------------------------------------------------------------


def test_schema_describes_custom_resources() -> None:
    schema = Resources.model_json_schema()
    assert schema["type"] == "object"
    assert schema["additionalProperties"] == {
        "type": "number",
        "minimum": 0,
        "maximum": MAX_CUSTOM_AMOUNT,
    }
    assert schema["propertyNames"] == {"pattern": CUSTOM_NAME_PATTERN}
    assert set(schema["properties"]) == {"cores", "memory", "gpus"}


def test_schema_of_gpus_and_memory() -> None:
    schema = Resources.model_json_schema()
    count, specs = schema["properties"]["gpus"]["anyOf"]
    assert count == {"type": "integer", "minimum": 0, "maximum": MAX_GPUS}
    assert specs["type"] == "array"
    assert specs["maxItems"] == MAX_GPUS
    assert specs["items"] == {"$ref": "#/$defs/GpuSpec"}
    gpu = schema["$defs"]["GpuSpec"]
    assert gpu["additionalProperties"] is False
    assert set(gpu["properties"]) == {"memory", "min_compute_capability"}
    memory = schema["properties"]["memory"]["anyOf"]
    assert memory[0] == {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}
    assert memory[1]["type"] == "string"
    assert memory[1]["pattern"] == MEMORY_PATTERN


# --- merging a PATCH -------------------------------------------------------------

CURRENT = {"cores": 2, "memory": GIB, "gpus": 1, "licences": 2}


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        ({}, CURRENT),
        ({"cores": 1}, {**CURRENT, "cores": 1}),
        ({"memory": "2 GiB"}, {**CURRENT, "memory": 2 * GIB}),
        ({"gpus": [{"memory": "8 GiB"}]}, {**CURRENT, "gpus": [{"memory": 8 * GIB}]}),
        ({"scratch_gb": 10}, {**CURRENT, "scratch_gb": 10}),
        ({"licences": 5}, {**CURRENT, "licences": 5}),
        ({"licences": None}, {"cores": 2, "memory": GIB, "gpus": 1}),
        ({"absent": None}, CURRENT),
        ({"cores": None}, {**CURRENT, "cores": 1}),
        ({"memory": None}, {**CURRENT, "memory": 0}),
        ({"gpus": None}, {**CURRENT, "gpus": 0}),
        ({"cores": {"count": 4, "percent": 50}}, {**CURRENT, "cores": 2}),
        (
            {"cores": 0.5, "memory": None, "licences": None, "fpga": 1},
            {"cores": 0.5, "memory": 0, "gpus": 1, "fpga": 1},
        ),
    ],
)
def test_merge(patch: dict[str, Any], expected: dict[str, Any]) -> None:
    assert merge_resources(CURRENT, patch).canonical() == expected


def test_merge_keeps_memory_when_patching_cores() -> None:
    merged = merge_resources({"cores": 2, "memory": 1073741824}, {"cores": 1})
    assert merged.canonical() == {"cores": 1, "memory": 1073741824, "gpus": 0}


def test_merge_accepts_models_and_does_not_mutate_inputs() -> None:
    current = Resources.model_validate(CURRENT)
    patch = {"licences": None}
    assert merge_resources(current, patch).custom == {}
    assert patch == {"licences": None}
    assert current.custom == {"licences": 2.0}
    assert merge_resources({}, Resources(cores=3)).canonical() == {**DEFAULT, "cores": 3}


@pytest.mark.parametrize(
    ("patch", "loc"),
    [
        ({"memory": "12 XB"}, ("memory",)),
        ({"licences": "many"}, ("licences",)),
        ({"gpus": [{"min_compute_capability": "x"}]}, ("gpus", 0, "min_compute_capability")),
        ({"bad key": 1}, ("bad key",)),
    ],
)
def test_merge_validates_the_result(patch: dict[str, Any], loc: tuple[Any, ...]) -> None:
    with pytest.raises(ValidationError) as info:
        merge_resources(CURRENT, patch)
    assert [e["loc"] for e in info.value.errors()] == [loc]


@pytest.mark.parametrize("patch", [5, "cores", [1], None])
def test_merge_with_a_non_object_patch_is_a_validation_error(patch: Any) -> None:
    with pytest.raises(ValidationError):
        merge_resources(CURRENT, patch)


def test_merge_can_exceed_the_custom_limit_only_to_be_refused() -> None:
    current = {f"r{i}": 1 for i in range(MAX_CUSTOM_RESOURCES)}
    with pytest.raises(ValidationError, match="at most 32"):
        merge_resources(current, {"extra": 1})
    assert len(merge_resources(current, {"r0": None, "extra": 1}).custom) == 32


# --- fits ----------------------------------------------------------------------

WORKER = {"cores": 8, "memory": 16 * GIB, "gpus": 2, "licences": 3}


@pytest.mark.parametrize(
    ("request_", "free", "expected"),
    [
        ({}, WORKER, True),
        ({}, {"cores": 0}, False),
        ({"cores": 0}, {"cores": 0}, True),
        (WORKER, WORKER, True),
        ({"cores": 8}, WORKER, True),
        ({"cores": 8.5}, WORKER, False),
        ({"memory": "16 GiB"}, WORKER, True),
        ({"memory": 16 * GIB + 1}, WORKER, False),
        ({"gpus": 2}, WORKER, True),
        ({"gpus": 3}, WORKER, False),
        ({"gpus": [{"memory": "80 GiB"}, {}]}, WORKER, True),  # only the count matters here
        ({"gpus": [{}, {}, {}]}, WORKER, False),
        ({"gpus": 2}, {**WORKER, "gpus": [{}, {}]}, True),
        ({"licences": 3}, WORKER, True),
        ({"licences": 4}, WORKER, False),
        ({"fpga": 1}, WORKER, False),  # absent from free counts as zero
        ({"fpga": 0}, WORKER, True),
        ({"cores": 1}, {"cores": 1, "fpga": 1}, True),  # what free has extra is irrelevant
        ({"cores": 0.3}, {"cores": 0.1 + 0.2}, True),  # rounding of freed fractions
        ({"licences": 0.3}, {"licences": 0.1 + 0.2}, True),
        ({"cores": 0.31}, {"cores": 0.3}, False),
    ],
)
def test_fits(request_: dict[str, Any], free: dict[str, Any], expected: bool) -> None:
    assert fits(Resources.model_validate(request_), Resources.model_validate(free)) is expected


custom_names = st.from_regex(CUSTOM_NAME_PATTERN, fullmatch=True).filter(
    lambda name: (
        name.lower() not in {"cores", "memory", "gpus", "core", "cpu", "cpus", "mem", "gpu"}
    )
)
resources_data = st.fixed_dictionaries(
    {},
    optional={
        "cores": st.floats(min_value=0, max_value=1000),
        "memory": st.integers(min_value=0, max_value=2**63 - 1),
        "gpus": st.integers(min_value=0, max_value=MAX_GPUS),
    },
).flatmap(
    lambda fixed: st.dictionaries(
        custom_names, st.integers(0, 10**6) | st.floats(0, MAX_CUSTOM_AMOUNT), max_size=5
    ).map(lambda custom: {**custom, **fixed})
)


@given(resources_data)
def test_anything_fits_in_itself_and_canonical_round_trips(data: dict[str, Any]) -> None:
    resources = Resources.model_validate(data)
    assert fits(resources, resources)
    canonical = resources.canonical()
    assert Resources.model_validate(canonical) == resources
    assert all(re.fullmatch(CUSTOM_NAME_PATTERN, key) for key in canonical)


@given(resources_data, st.sampled_from(["cores", "memory", "gpus"]))
def test_a_request_bigger_than_free_does_not_fit(data: dict[str, Any], key: str) -> None:
    free = Resources.model_validate(data)
    bigger = {"cores": free.cores + 1, "memory": free.memory + 1, "gpus": free.gpu_count + 1}
    assume(bigger["memory"] <= 2**63 - 1 and bigger["gpus"] <= MAX_GPUS)
    request = Resources.model_validate({**free.canonical(), key: bigger[key]})
    assert not fits(request, free)
