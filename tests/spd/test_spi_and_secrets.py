"""Hand-keyed SAs: reserved SPIs refused where they are written, keys never echoed."""

from __future__ import annotations

import pytest

from spd.parse import MIN_SPI, SetkeyError, parse_setkey

AES128 = "0x" + "00112233445566778899aabbccddeeff"
SHA1 = "0x" + "0123456789abcdef0123456789abcdef01234567"
RESERVED = ("RFC 4303 §2.1: 1-255 are reserved by IANA, 0 for local use); use 256 (0x100) or "
            "above")


def add(spi: str, tail: str = "") -> str:
    return f"add 198.18.0.1 198.18.0.2 esp {spi} -E aes-cbc {AES128} -A hmac-sha1 {SHA1}{tail};"


@pytest.mark.parametrize(
    ("spi", "value"), [("0", 0), ("1", 1), ("255", 255), ("0xff", 255), ("0x0", 0), ("0X10", 16)]
)
def test_a_reserved_spi_is_refused_at_its_column(spi, value):
    text = "spdflush;\n# hand-keyed\n" + add(spi) + "\n"
    with pytest.raises(SetkeyError) as err:
        parse_setkey(text, "setkey.conf")
    e = err.value
    assert (e.file, e.line, e.col, e.token) == ("setkey.conf", 3, 31, spi)
    assert str(e) == f"setkey.conf:3:31: SPI {value} is reserved ({RESERVED} at '{spi}'"


def test_a_reserved_spi_is_refused_in_delete_too():
    with pytest.raises(SetkeyError) as err:
        parse_setkey("delete 198.18.0.1 198.18.0.2 esp 0x20;", "setkey.conf")
    assert str(err.value) == f"setkey.conf:1:34: SPI 32 is reserved ({RESERVED} at '0x20'"


@pytest.mark.parametrize("spi", [str(MIN_SPI), "0x100", "0xffffffff", "4294967295"])
def test_the_first_and_last_usable_spis_are_accepted(spi):
    (sa,) = parse_setkey(add(spi), "setkey.conf").commands
    assert sa.spi == int(spi, 0)


def test_an_spi_above_32_bits_names_the_usable_range():
    with pytest.raises(SetkeyError) as err:
        parse_setkey(add("0x100000000"), "setkey.conf")
    assert err.value.msg == "SPI out of range (256 .. 0xffffffff)"


def test_a_nul_byte_is_an_error_at_its_position():
    with pytest.raises(SetkeyError) as err:
        parse_setkey("spdflush;\n" + add("0x1000").replace("aes-cbc", "aes\0cbc"), "s.conf")
    assert str(err.value) == "s.conf:2:44: a NUL byte: setkey.conf is text at '\\0'"


SECRET = "0x" + "5ec7e75ec7e75ec7e75ec7e75ec7e75e"


@pytest.mark.parametrize(
    ("text", "col", "words"),
    [
        # the algorithm name forgotten: the key stands where the name should
        (f"add 198.18.0.1 198.18.0.2 esp 0x1000 -E {SECRET} -A hmac-sha1 {SHA1};", 41,
         "unknown algorithm"),
        # a key split in two: its second half is taken for an option
        (add("0x1000", f" {SECRET}"), 140, "unknown SA option"),
        # a quoted key where the algorithm name should be
        ('add 198.18.0.1 198.18.0.2 esp 0x1000 -E "5ec7e75ec7e7" -A hmac-sha1 x;', 41,
         "expected an encryption algorithm"),
        # a second quoted key after the first
        (f'add 198.18.0.1 198.18.0.2 esp 0x1000 -E aes-cbc {AES128} -A hmac-sha1 {SHA1} '
         '"5ec7e75ec7e7";', 140, "';'"),
    ],
)
def test_a_key_out_of_place_is_never_echoed(text, col, words):
    with pytest.raises(SetkeyError) as err:
        parse_setkey(text, "k.conf")
    e = err.value
    assert (e.line, e.col, e.token) == (1, col, "<key?>")
    assert words in e.msg
    assert "5ec7e7" not in str(e) and "5ec7e7" not in repr(e.args)


def test_an_unterminated_quoted_key_is_not_echoed():
    with pytest.raises(SetkeyError) as err:
        parse_setkey('add 198.18.0.1 198.18.0.2 esp 0x1000 -E aes-cbc "5ec7e75ec7e7;\n', "k.conf")
    assert str(err.value) == "k.conf:1:49: unterminated quoted string at '\"'"


def test_sad_commands_run_on_from_the_files_before():
    """setkey -f one.conf; setkey -f two.conf: the second file's flush and delete see the
    first file's SAs."""
    one = parse_setkey(add("0x1000") + "\n" + add("0x1001") + "\n", "one.conf")
    two = parse_setkey("delete 198.18.0.1 198.18.0.2 esp 0x1000;\n" + add("0x1002"), "two.conf")
    assert [sa.spi for sa in two.manual_sas(one.manual_sas())] == [0x1001, 0x1002]
    with pytest.raises(SetkeyError) as err:
        parse_setkey(add("0x1001"), "three.conf").manual_sas(one.manual_sas())
    assert (err.value.file, err.value.line, err.value.msg) == (
        "three.conf", 1, "this SA was already added")
    flushed = parse_setkey("flush;\n" + add("0x1000"), "four.conf").manual_sas(one.manual_sas())
    assert [sa.spi for sa in flushed] == [0x1000]
