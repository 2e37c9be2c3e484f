"""``chroma-api.yaml`` and the served app agree: same paths, methods, codes, schemas."""

from __future__ import annotations

from pathlib import Path

import yaml

from chroma.api.contract import current_schema

CONTRACT = Path(__file__).resolve().parents[2] / "chroma-api.yaml"


def test_contract_file_is_what_the_app_serves() -> None:
    on_disk = yaml.safe_load(CONTRACT.read_text())
    served = current_schema()
    assert on_disk["openapi"].startswith("3.1")
    # Compare piece by piece first, for a readable failure; then everything.
    assert sorted(on_disk["paths"]) == sorted(served["paths"]), "paths differ"
    for path, item in served["paths"].items():
        assert sorted(on_disk["paths"][path]) == sorted(item), f"methods of {path} differ"
        for method, operation in item.items():
            documented = on_disk["paths"][path][method]
            assert sorted(documented["responses"]) == sorted(operation["responses"]), (
                f"status codes of {method.upper()} {path} differ"
            )
    assert on_disk["components"]["schemas"] == served["components"]["schemas"]
    assert on_disk == served, "run `chroma openapi` to regenerate chroma-api.yaml"


def test_every_error_response_uses_the_error_body() -> None:
    for path, item in current_schema()["paths"].items():
        for method, operation in item.items():
            for code, response in operation["responses"].items():
                if int(code) >= 400:
                    schema = response["content"]["application/json"]["schema"]
                    assert schema["$ref"].endswith(("/ErrorBody", "/Readiness")), (
                        f"{method.upper()} {path} {code}"
                    )


def test_log_documents_both_body_types_and_its_codes() -> None:
    operation = current_schema()["paths"]["/api/v1/log"]["post"]
    content = operation["requestBody"]["content"]
    assert set(content) == {"application/json", "application/vnd.apache.arrow.stream"}
    assert {"201", "202", "400", "409", "413", "415", "422", "503"} <= set(operation["responses"])
