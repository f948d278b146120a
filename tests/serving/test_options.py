"""The detect options have one definition (serving/options.py), shared by the API and the CLI."""

from __future__ import annotations

import pytest

from serving.options import DetectParams, OptionError, class_ids, parse_params, to_query


def test_the_api_query_and_the_cli_validate_the_same_options() -> None:
    from serving.api.params import DetectParams as ApiParams

    assert ApiParams.model_json_schema()["properties"] == DetectParams.model_json_schema()["properties"]


def test_bad_values_name_their_option() -> None:
    with pytest.raises(OptionError) as caught:
        parse_params({"max_det": 0, "conf": None})
    assert caught.value.name == "max_det" and "greater than or equal to 1" in caught.value.message
    with pytest.raises(OptionError) as caught:
        parse_params({"confidence": 0.9})  # unknown names are refused, as the API refuses them
    assert caught.value.name == "confidence"


def test_classes_resolve_through_the_lookup() -> None:
    lookup = {"crop": 0, "weed": 1}

    def ids(names: list[str]) -> tuple[int, ...]:
        if unknown := [n for n in names if n not in lookup]:
            raise ValueError(f"unknown class(es) {', '.join(unknown)}")
        return tuple(lookup[n] for n in names)

    query = to_query(parse_params({"classes": ["weed, crop"], "lanes": 4, "tile": "off"}), ids)
    assert query.options.classes == (1, 0) and query.options.tile == "off" and query.lanes == 4
    with pytest.raises(OptionError, match="classes: unknown class"):
        class_ids(["weed", "rose"], ids)
    with pytest.raises(OptionError, match="classes: give at least one"):
        class_ids([" , "], ids)
    assert to_query(parse_params({"mode": "green", "min_area": 9}), ids).green.min_area == 9
