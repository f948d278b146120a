"""The detect options have one definition (serving/options.py), shared by the API and the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from serving.options import DetectParams, OptionError, class_ids, parse_params, to_query


def test_every_detect_option_is_a_cli_option_and_an_api_query_parameter(shipped_model: Path) -> None:
    import typer

    import weedscan_cli
    from serving.api.app import create_app
    from serving.config import Settings

    options = set(DetectParams.model_fields)
    cli = {param.name for param in typer.main.get_command(weedscan_cli.app).commands["detect"].params}
    assert options <= cli, options - cli
    spec = create_app(Settings(model=shipped_model)).openapi()
    for route in ("/v1/detect", "/v1/detect/batch", "/v1/annotate"):
        query = {p["name"] for p in spec["paths"][route]["post"]["parameters"] if p["in"] == "query"}
        assert options <= query, (route, options - query)


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
