import pytest

from kumulus.core.sizes import SizeError, format_size, parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("512m", 512 << 20),
        ("1g", 1 << 30),
        ("1.5G", 3 << 29),
        ("4g", 4 << 30),
        ("1024", 1024),
        ("2GiB", 2 << 30),
        ("10gb", 10 << 30),
        ("100k", 100 << 10),
        (" 1 t ", 1 << 40),
        (4096, 4096),
    ],
)
def test_parses_human_sizes(text: str | int, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "abc", "-1g", "0", "0g", "1x", "1.5.5g", "1e9", "g", True, "1g; rm -rf /", "9" * 40],
)
def test_refuses_nonsense(text: object) -> None:
    with pytest.raises(SizeError):
        parse_size(text)  # type: ignore[arg-type]


def test_formats_round_trip() -> None:
    for text in ["512m", "1g", "1.5g", "4g", "100k"]:
        assert format_size(parse_size(text)) == text
