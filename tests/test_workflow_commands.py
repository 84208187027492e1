"""GitHub workflow commands: escaping, annotations and log groups."""
from __future__ import annotations

import io

import pytest

from forgegit.workflow_commands import (
    annotation, command, escape_data, escape_property, group, safe_lines, safe_text,
)


def test_escape_data_escapes_percent_cr_and_lf_only() -> None:
    """A multi-line message stays one annotation instead of breaking the command."""
    assert escape_data("50% a:b,c\r\nnext") == "50%25 a:b,c%0D%0Anext"


def test_escape_property_also_escapes_colon_and_comma() -> None:
    """A file name with `:` or `,` cannot inject another property."""
    assert escape_property("a:b,c%\n") == "a%3Ab%2Cc%25%0A"


def test_percent_is_escaped_first_so_escapes_are_not_double_escaped() -> None:
    assert escape_data("%0A") == "%250A"


def test_annotation_with_file_line_and_title() -> None:
    assert annotation("error", "no docstring", file="functions/a.py", line=3, title="forgegit") == (
        "::error file=functions/a.py,line=3,title=forgegit::no docstring"
    )


def test_annotation_without_properties_has_no_space() -> None:
    assert annotation("notice", "done") == "::notice::done"


def test_annotation_escapes_message_and_properties() -> None:
    assert annotation("warning", "a\nb: 100%", file="dir,x/a:b.py", line=1) == (
        "::warning file=dir%2Cx/a%3Ab.py,line=1::a%0Ab: 100%25"
    )


def test_annotation_end_line_and_columns() -> None:
    assert annotation("error", "m", file="f", line=1, end_line=2, col=3, end_column=4) == (
        "::error file=f,line=1,endLine=2,col=3,endColumn=4::m"
    )


def test_annotation_rejects_an_unknown_level() -> None:
    with pytest.raises(ValueError, match="error, warning, notice"):
        annotation("fatal", "m")


def test_command_is_general() -> None:
    assert command("add-mask", "s3cr%t") == "::add-mask::s3cr%25t"


def test_group_prints_group_and_endgroup_even_on_error() -> None:
    out = io.StringIO()
    with pytest.raises(RuntimeError):
        with group("Epoch 1: a,b\n", file=out):
            print("inside", file=out)
            raise RuntimeError("boom")
    assert out.getvalue() == "::group::Epoch 1: a,b%0A\ninside\n::endgroup::\n"


def test_group_defaults_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    with group("Evaluate"):
        print("x")
    assert capsys.readouterr().out == "::group::Evaluate\nx\n::endgroup::\n"


# --------------------------------------------------------------------------- text from the model


def printed_lines(text: str) -> list[str]:
    """How the Actions runner splits output into lines (CR, LF and CRLF end a line)."""
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def is_command(line: str) -> bool:
    """What the runner would act on: `::name ...::` after leading whitespace, or the older `##[name]` anywhere."""
    return line.lstrip().startswith("::") or "##[" in line


@pytest.mark.parametrize("text", [
    "x\n::error file=functions/a.py,line=1::forged",
    "x\r::stop-commands::tok\r\n::error::after stop",
    "::add-mask::hide-the-real-error",
    "   ::warning::indented",
    "\t::notice::tabbed",
    "name\u2028::error::unicode line separator",
    "name\x85::error::next line",
    "progress ##[error]old style command",
    "::",
])
def test_model_text_cannot_print_a_workflow_command(text: str) -> None:
    """A rejected action's name with a newline once printed a forged `::error` and `::stop-commands::`."""
    safe = safe_text(text)
    assert len(printed_lines(safe)) == 1
    assert not any(is_command(line) for line in printed_lines(f"  rejected add {safe}: reason"))
    assert not is_command(safe)


def test_safe_text_shows_what_was_there() -> None:
    """The text stays readable: newlines and escapes are shown as escapes, nothing is dropped silently."""
    assert safe_text("a\nb\r\nc") == "a\\nb\\r\\nc"
    assert safe_text("\x1b[31mred\x1b[0m") == "\\x1b[31mred\\x1b[0m"  # no terminal escape sequences either
    assert safe_text("rtl\u202eevil") == "rtl\\u202eevil"
    assert safe_text("plain: text, 100% ok") == "plain: text, 100% ok"
    assert safe_text("x" * 50, limit=10) == "x" * 9 + "…"
    assert safe_text(None) == "None"


def test_safe_lines_keeps_lines_but_defuses_each() -> None:
    out = safe_lines("| a | b |\n::error::x\r\n  ::set-env name=A::1\nok")
    assert out.split("\n")[0] == "| a | b |" and out.split("\n")[-1] == "ok"
    assert len(out.split("\n")) == 4
    assert not any(is_command(line) for line in printed_lines(out))
