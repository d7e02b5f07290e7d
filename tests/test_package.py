import pytest

import zsaver
from zsaver.errors import ApproachError
from zsaver.savers.base import normalize_approach


@pytest.mark.parametrize("given, expected", [("append", "append"), (" Overwrite ", "overwrite"), ("UPDATE", "update")])
def test_approach_is_normalised_case_and_space_insensitively(given: str, expected: str) -> None:
    assert normalize_approach(given) == expected


def test_unknown_approach_lists_the_three_choices() -> None:
    with pytest.raises(ValueError, match=r"'append', 'overwrite', 'update'.*'upsert'") as info:
        normalize_approach("upsert")
    assert isinstance(info.value, ApproachError)


def test_errors_derive_from_builtins() -> None:
    assert issubclass(zsaver.errors.DTypeMismatchError, TypeError)
    assert issubclass(zsaver.errors.RowIndexError, IndexError)
    assert issubclass(zsaver.errors.DatasetNotFoundError, FileNotFoundError)
