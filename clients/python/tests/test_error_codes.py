"""One exception class per error code, and no code missing: the codes of the README's error
table (with their statuses) and of ``types/src/error.rs`` (``ErrorCode::as_str``) each have their
class, with the status the API answers them with."""

from __future__ import annotations

import re

from _support import REPO_ROOT

from signing_enclave import ERROR_CLASSES, SignerApiError, UnexpectedResponseError


def readme_codes() -> dict[str, int]:
    text = (REPO_ROOT / "README.md").read_text()
    section = text[text.index("### Errors") :]
    section = section[: section.index("\n## ")]
    codes: dict[str, int] = {}
    for row in section.splitlines():
        m = re.match(r"^\| (\d{3})(?: / (\d{3}))? \| (.+?) \|", row)
        if not m:
            continue
        found = re.findall(r"`([a-z_]+)`", m.group(3))
        statuses = [int(m.group(1))] + ([int(m.group(2))] if m.group(2) else [])
        for i, code in enumerate(found):
            codes[code] = statuses[min(i, len(statuses) - 1)]
    return codes


def rust_codes() -> set[str]:
    text = (REPO_ROOT / "types" / "src" / "error.rs").read_text()
    body = text[text.index("fn as_str") :]
    body = body[: body.index("\n    }\n")]
    return set(re.findall(r'=> "([a-z_]+)"', body))


def test_every_readme_code_has_its_class_and_status() -> None:
    codes = readme_codes()
    assert len(codes) >= 27, codes
    for code, status in codes.items():
        assert code in ERROR_CLASSES, f"no exception class for {code}"
        assert ERROR_CLASSES[code].default_status == status, code
    assert set(ERROR_CLASSES) == set(codes), "a class for a code the README does not list"


def test_every_enclave_code_has_its_class() -> None:
    codes = rust_codes()
    assert len(codes) >= 20
    assert codes <= set(ERROR_CLASSES), codes - set(ERROR_CLASSES)


def test_classes_are_distinct_subclasses_of_the_base() -> None:
    assert len(set(ERROR_CLASSES.values())) == len(ERROR_CLASSES)
    for code, klass in ERROR_CLASSES.items():
        assert issubclass(klass, SignerApiError) and klass is not SignerApiError
        assert klass.code_name == code
        assert klass.__name__.endswith("Error")
    assert issubclass(UnexpectedResponseError, SignerApiError)
