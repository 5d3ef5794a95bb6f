"""setkey.conf grammar: what parses to what, and where malformed files are reported."""

from __future__ import annotations

import ipaddress

import pytest

from spd.commands import Flush, ManualSA, ManualSADelete, ManualSADeleteAll, SpdCommand
from spd.parse import SetkeyError, parse_setkey
from spd.policy import (
    PRIORITY_DEFAULT,
    PRIORITY_HIGH,
    PRIORITY_LOW,
    PROTO_ANY,
    IpsecRule,
)
from spd.protocols import builtin_table, parse_protocols

AES128 = "0x" + "00112233445566778899aabbccddeeff"
SHA1 = "0x" + "0123456789abcdef0123456789abcdef01234567"


def policy(line: str):
    (cmd,) = parse_setkey(line, "t.conf").commands
    assert isinstance(cmd, SpdCommand)
    return cmd.policy


def spec(text: str):
    return policy(f"spdadd 192.0.2.1 198.18.0.1 any -P {text};")


# -- selectors ---------------------------------------------------------------------------

def test_addresses_prefixes_and_ports():
    p = policy("spdadd 198.18.0.0/15[500] 10.1.2.3/8[any] udp -P out none;")
    assert p.src == ipaddress.ip_network("198.18.0.0/15")
    assert p.dst == ipaddress.ip_network("10.0.0.0/8")  # host bits dropped like the kernel
    assert (p.sport, p.dport, p.proto) == (500, 0, 17)


def test_ipv6_and_family_flags():
    p = policy("spdadd -6 2001:db8::/32[80] ::1 tcp -P in discard;")
    assert p.src == ipaddress.ip_network("2001:db8::/32") and p.sport == 80
    assert p.dst == ipaddress.ip_network("::1/128") and p.proto == 6
    assert policy("spdadd -4n 10.0.0.1 10.0.0.2 any -P out none;").src.version == 4
    assert policy("spdadd -n -4 10.0.0.1 10.0.0.2 any -P out none;").src.version == 4


@pytest.mark.parametrize("word,number", [
    ("any", PROTO_ANY), ("gre", 47), ("GRE", 47), ("tcp", 6), ("udp", 17), ("icmp", 1),
    ("icmp6", 58), ("ipv6-icmp", 58), ("ip4", 4), ("esp", 50), ("47", 47), ("132", 132),
    ("0", PROTO_ANY), ("255", PROTO_ANY),
])
def test_upper_layer_protocol_by_name_or_number(word, number):
    text = f"spdadd 10.0.0.1 10.0.0.2 {word} -P out none;"
    (cmd,) = parse_setkey(text, "t.conf", protocols=builtin_table()).commands
    assert cmd.policy.proto == number


def test_protocol_names_come_from_the_given_table():
    table = parse_protocols("# comment\nfoo\t200\tFOO # private\nbad line\n")
    (cmd,) = parse_setkey("spdadd 10.0.0.1 10.0.0.2 FOO -P out none;", "t.conf",
                          protocols=table).commands
    assert cmd.policy.proto == 200
    with pytest.raises(SetkeyError, match="unknown upper-layer protocol"):
        parse_setkey("spdadd 10.0.0.1 10.0.0.2 gre -P out none;", "t.conf", protocols=table)


def test_icmp_type_code_and_gre_port_encoded_key():
    p = policy("spdadd 10.0.0.1 10.0.0.2 icmp 8,0 -P out none;")
    assert (p.proto, p.sport, p.dport) == (1, 8, 0)
    # A GRE selector written with ports: the kernel reads the key from the two port fields.
    p = policy("spdadd 10.0.0.1[1] 10.0.0.2[2] gre -P out none;")
    assert (p.gre_key, p.sport, p.dport) == (0x10002, 0, 0)
    assert policy("spdadd 10.0.0.1 10.0.0.2 gre 255.255.255.255 -P out none;").gre_key == 2**32 - 1
    assert policy("spdadd 10.0.0.1 10.0.0.2 gre 1.2.3.4 -P out none;").gre_key == 0x01020304


# -- policies ------------------------------------------------------------------------------

@pytest.mark.parametrize("text,priority", [
    ("out none", PRIORITY_DEFAULT),
    ("out prio def none", PRIORITY_DEFAULT),
    ("out priority high none", PRIORITY_HIGH),
    ("out prio low none", PRIORITY_LOW),
    ("out prio 10 none", PRIORITY_DEFAULT - 10),
    ("out prio -10 none", PRIORITY_DEFAULT + 10),
    ("out prio 2147483648 none", 0),
    ("out prio -2147483647 none", 2**32 - 1),
    ("out prio high + 5 none", PRIORITY_HIGH - 5),
    ("out prio high +5 none", PRIORITY_HIGH - 5),
    ("out prio low - 7 none", PRIORITY_LOW + 7),
    ("out prio high + 1073741824 none", 0),
    ("out prio low - 1073741823 none", 2**32 - 1),
])
def test_priority_forms(text, priority):
    assert spec(text).priority == priority


@pytest.mark.parametrize("text,token", [
    ("out prio 2147483649 none", "2147483649"),
    ("out prio -2147483648 none", "2147483648"),
    ("out prio high + 1073741825 none", "1073741825"),
    ("out prio low - 1073741824 none", "1073741824"),
    ("out prio + 5 none", "+"),
    ("out prio medium none", "medium"),
])
def test_priority_out_of_range_or_malformed(text, token):
    with pytest.raises(SetkeyError) as err:
        spec(text)
    assert err.value.token == token


def test_levels_and_reqids():
    assert spec("fwd ipsec esp/transport//use").rules == (
        IpsecRule("esp", "transport", None, None, "use", 0),)
    assert spec("in ipsec esp/transport//unique:7").rules == (
        IpsecRule("esp", "transport", None, None, "unique", 7),)
    assert spec("out ipsec esp/tunnel/198.18.0.1-198.18.0.2/default").rules == (
        IpsecRule("esp", "tunnel", ipaddress.ip_address("198.18.0.1"),
                  ipaddress.ip_address("198.18.0.2"), "default", 0),)
    assert spec("out ipsec esp/transport").rules[0].level == "default"
    assert spec("out ipsec esp/tunnel/2001:db8::1-2001:db8::2/unique").rules[0].src.version == 6
    assert spec("out ipsec esp/transport/me-any/require").rules[0].src is None


def test_esp_transport_and_tunnel_rules_of_a_racoon_site_load():
    text = ("spdadd 10.0.1.0/24 10.0.2.0/24 any -P out ipsec "
            "esp/tunnel/198.18.0.1-198.18.0.2/require;\n"
            "spdadd 10.0.2.0/24 10.0.1.0/24 any -P in ipsec "
            "esp/tunnel/198.18.0.2-198.18.0.1/require;\n"
            "spdadd 198.18.0.1 198.18.0.2 gre -P out ipsec esp/transport//require;\n")
    rules = [c.policy.rules for c in parse_setkey(text, "t.conf").commands]
    assert [(r.protocol, r.mode) for (r,) in rules] == [
        ("esp", "tunnel"), ("esp", "tunnel"), ("esp", "transport")]


def test_policy_text_spans_lines_and_keeps_comments_out():
    text = ("spdadd 10.0.0.0/24 10.0.1.0/24 any  # the LANs\n"
            "   -P out   # outbound\n"
            "   ipsec esp/tunnel/198.18.0.1-198.18.0.2/require  # to the peer\n"
            "   ;\n")
    p = policy(text)
    assert p.rules[0].dst == ipaddress.ip_address("198.18.0.2")


def test_spdupdate_spddelete_and_flush_forms():
    sk = parse_setkey("flush esp; flush;\nspdupdate 10.0.0.1 10.0.0.2 any -P out none;\n"
                      "spddelete 10.0.0.1 10.0.0.2 any -P out;\n;;\nexit;\nthis is ignored",
                      "t.conf")
    assert sk.commands[0] == Flush("esp") and sk.commands[1] == Flush(None)
    assert [c.verb for c in sk.commands[2:]] == ["spdupdate", "spddelete"]
    assert sk.commands[3].policy.direction == "out"


# -- manual SAs ----------------------------------------------------------------------------

def test_manual_sa_with_every_option():
    text = (f"add 198.18.0.1 198.18.0.2 esp 0x1000 -m transport -r 64 -u 9 -f random-pad\n"
            f"    -lh 3600 -ls 3000 -bh 1000000 -bs 900000\n"
            f"    -E aes-cbc {AES128} -A hmac-sha1 {SHA1};")
    (sa,) = parse_setkey(text, "t.conf").commands
    assert isinstance(sa, ManualSA)
    assert (str(sa.src), str(sa.dst), sa.protocol, sa.spi) == ("198.18.0.1", "198.18.0.2",
                                                              "esp", 0x1000)
    assert (sa.mode, sa.replay, sa.reqid, sa.flags) == ("transport", 64, 9, ("random-pad",))
    assert (sa.hard_s, sa.soft_s, sa.hard_bytes, sa.soft_bytes) == (3600, 3000, 1000000, 900000)
    assert (sa.enc_alg, sa.auth_alg) == ("aes-cbc", "hmac-sha1")
    assert sa.enc_key == bytes.fromhex(AES128[2:]) and sa.auth_key == bytes.fromhex(SHA1[2:])
    assert AES128[2:] not in repr(sa) and SHA1[2:] not in repr(sa)  # keys never in a repr


@pytest.mark.parametrize("enc,key,alg", [
    ("aes-cbc", "0x" + "11" * 24, "aes-cbc"),
    ("rijndael-cbc", "0x" + "11" * 32, "aes-cbc"),
    ("3des-cbc", "0x" + "11" * 24, "3des-cbc"),
    ("aes-cbc", '"0123456789abcdef"', "aes-cbc"),
])
def test_manual_sa_encryption_algorithms(enc, key, alg):
    (sa,) = parse_setkey(f"add 10.0.0.1 10.0.0.2 esp 4096 -E {enc} {key} -A hmac-sha1 {SHA1};",
                         "t.conf").commands
    assert sa.enc_alg == alg and sa.setkey_enc == enc and sa.mode == "any" and sa.replay is None


@pytest.mark.parametrize("auth,size,alg", [
    ("hmac-sha1", 20, "hmac-sha1"),
    ("hmac-sha256", 32, "hmac-sha256-96"),  # what a Linux PF_KEY peer puts on the wire
    ("hmac-sha2-256", 32, "hmac-sha256-96"),
    ("hmac-md5", 16, "hmac-md5"),
])
def test_manual_sa_authentication_algorithms(auth, size, alg):
    key = "0x" + "ab" * size
    (sa,) = parse_setkey(f"add 10.0.0.1 10.0.0.2 esp 4096 -E aes-cbc {AES128} -A {auth} {key};",
                         "t.conf").commands
    assert sa.auth_alg == alg and sa.setkey_auth == auth and len(sa.auth_key) == size


def test_odd_hex_key_gets_a_leading_half_byte():
    key = "0x" + "1" * 31  # 15.5 bytes: setkey pads the front
    (sa,) = parse_setkey(f"add 10.0.0.1 10.0.0.2 esp 999 -E aes-cbc {key} -A hmac-sha1 {SHA1};",
                         "t.conf").commands
    assert sa.enc_key == bytes.fromhex("0" + "1" * 31)


def test_manual_sas_fold_flush_add_delete():
    def add(spi, src="10.0.0.1", dst="10.0.0.2"):
        return f"add {src} {dst} esp {0x1000 + spi} -E aes-cbc {AES128} -A hmac-sha1 {SHA1};\n"
    text = (add(1) + "flush;\n" + add(2) + add(3) + add(4, "10.0.0.2", "10.0.0.1")
            + "delete 10.0.0.1 10.0.0.2 esp 0x1002;\n" + add(5) + add(6, "10.0.0.9")
            + "deleteall 10.0.0.1 10.0.0.2 esp;\n")
    sk = parse_setkey(text, "t.conf")
    assert isinstance(sk.commands[5], ManualSADelete)
    assert isinstance(sk.commands[-1], ManualSADeleteAll)
    assert [sa.spi for sa in sk.manual_sas()] == [0x1004, 0x1006]


@pytest.mark.parametrize("tail,line,token,msg", [
    ("add 10.0.0.1 10.0.0.2 esp 0x1007 -E aes-cbc {k} -A hmac-sha1 {a};", 2, "0x1007",
     "already"),
    ("delete 10.0.0.1 10.0.0.2 esp 0x1008;", 2, "0x1008", "no such SA"),
])
def test_manual_sa_conflicts_name_their_line(tail, line, token, msg):
    text = (f"add 10.0.0.1 10.0.0.2 esp 0x1007 -E aes-cbc {AES128} -A hmac-sha1 {SHA1};\n"
            + tail.format(k=AES128, a=SHA1))
    sk = parse_setkey(text, "sa.conf")
    with pytest.raises(SetkeyError) as err:
        sk.manual_sas()
    assert (err.value.line, err.value.col, err.value.token) == (line, 1, token)
    assert msg in err.value.msg


# -- malformed files -----------------------------------------------------------------------

MALFORMED = [
    # (text, line, column, token, words of the message)
    ("spdadd 10.0.0.1 10.0.0.2 any -P out none", 1, 41, "", "';'"),
    ("flush;\nspdadd 10.0.0.300 10.0.0.2 any -P out none;", 2, 8, "10.0.0.300", "numeric IP"),
    ("spdadd host.example 10.0.0.2 any -P out none;", 1, 8, "host.example", "host names"),
    ("spdadd 10.0.0.1/33 10.0.0.2 any -P out none;", 1, 17, "33", "prefix length"),
    ("spdadd 10.0.0.1[70000] 10.0.0.2 any -P out none;", 1, 17, "70000", "port"),
    ("spdadd 10.0.0.1[ssh] 10.0.0.2 any -P out none;", 1, 17, "ssh", "port"),
    ("spdadd 10.0.0.1[5 10.0.0.2 any -P out none;", 1, 19, "10.0.0.2", "']'"),
    ("spdadd 10.0.0.1 ::1 any -P out none;", 1, 17, "::1", "address families"),
    ("spdadd fe80::1%eth0 ::1 any -P out none;", 1, 8, "fe80::1%eth0", "scoped"),
    ("spdadd ::1 ::1 any -P out ipsec esp/tunnel/::1-fe80::2%lo/require;", 1, 48, "fe80::2%lo",
     "scoped"),
    ("spdadd -6 10.0.0.1 ::1 any -P out none;", 1, 11, "10.0.0.1", "IPv6"),
    ("spdadd 10.0.0.1 10.0.0.2 carrier-pigeon -P out none;", 1, 26, "carrier-pigeon",
     "upper-layer protocol"),
    ("spdadd 10.0.0.1 10.0.0.2 256 -P out none;", 1, 26, "256", "protocol number"),
    ("spdadd 10.0.0.1 10.0.0.2 tcp 80 -P out none;", 1, 30, "80", "only icmp"),
    ("spdadd ::/0 ::/0 icmp6 135 -P in none;", 1, 24, "135", "TYPE,CODE"),
    ("spdadd 10.0.0.1 10.0.0.2 gre 4294967296 -P out none;", 1, 30, "4294967296", "GRE key"),
    ("spdadd 10.0.0.1 10.0.0.2 gre 42 -P out none;", 1, 30, "42", "0.0.0.42"),
    ("add 10.0.0.1 10.0.0.2 esp-udp 0x1000 -E aes-cbc 0x00112233445566778899aabbccddeeff "
     "-A hmac-sha1 0x0011223344556677889900112233445566778899;", 1, 23, "esp-udp", "RFC 3948"),
    ("spdadd 10.0.0.1 10.0.0.2 gre 1.2.3.256 -P out none;", 1, 30, "1.2.3.256", "GRE key"),
    ("spdadd 10.0.0.1 10.0.0.2 any\n\n   -P sideways none;", 3, 7, "sideways", "direction"),
    ("spdadd 10.0.0.1 10.0.0.2 any -P out;", 1, 36, ";", "action"),
    ("spdadd 10.0.0.1 10.0.0.2 any -P out bypass;", 1, 37, "bypass", "not supported"),
    ("spdadd 10.0.0.1 10.0.0.2 any -P out ipsec;", 1, 42, ";", "rule"),
    ("spdadd 10.0.0.1 10.0.0.2 any -P out none esp/transport//require;", 1, 42, "esp",
     "takes no IPsec rules"),
    ("spdadd 10.0.0.1 10.0.0.2 any -P out ipsec esp;", 1, 46, ";", "'/'"),
    ("spdadd 10.0.0.1 10.0.0.2 any -P out ipsec esp/bus//require;", 1, 47, "bus", "mode"),
    ("spdadd 10.0.0.1 10.0.0.2 any -P out ipsec\n  esp/tunnel//require;", 2, 7, "tunnel",
     "end points"),
    ("spdadd 10.0.0.1 10.0.0.2 any -P out ipsec esp/tunnel/10.0.0.1-::1/require;", 1, 54,
     "10.0.0.1", "address families"),
    ("spdadd 10.0.0.1 10.0.0.2 any -P out ipsec esp/tunnel/10.0.0.1[x]-10.0.0.2/require;",
     1, 62, "[x]", "port"),
    ("spdadd 10.0.0.1 10.0.0.2 any -P out ipsec esp/transport//unique:0;", 1, 58, "unique:0",
     "unique:N"),
    ("spdadd 10.0.0.1 10.0.0.2 any -P out ipsec esp/transport//require $;", 1, 66, "$",
     "unexpected character"),
    ("spdadd 10.0.0.1 10.0.0.2 any -P in ipsec esp/transport/me-any/require;", 1, 56, "me",
     "direction"),
    ("spdadd tagged \"x\" -P out none;", 1, 8, "tagged", "not supported"),
    ("spdadd 10.0.0.1 10.0.0.2 any -ctx 1 1 \"x\" -P out none;", 1, 30, "-ctx",
     "not supported"),
    ("spdadd 10.0.0.1 10.0.0.2 any none;", 1, 30, "none", "-P"),
    ("spdflush junk;", 1, 10, "junk", "';'"),
    ("spdlist;", 1, 1, "spdlist", "unknown command"),
    ("dump esp;", 1, 1, "dump", "not supported"),
    ("# only a comment\n  /;", 2, 3, "/", "command"),
    # a quoted string is a key: its text is never shown, only where it starts
    ('add 10.0.0.1 10.0.0.2 esp 999 -E aes-cbc "unterminated;\n', 1, 42, '"', "unterminated"),
    # what pyike's data plane cannot carry: AH, IPComp, bundles, hand-keyed tunnel mode
    ("spdadd 10.0.1.0/24 10.0.2.0/24 any -P out ipsec ah/tunnel/198.18.0.1-198.18.0.2/require;",
     1, 49, "ah", "AH (RFC 4302) is not supported"),
    ("spdadd 10.0.0.1 10.0.0.2 any -P out ipsec\n  ipcomp/transport//use;", 2, 3, "ipcomp",
     "IPComp (RFC 3173) is not supported"),
    ("spdadd 10.0.0.1 10.0.0.2 any -P out ipsec esp/transport//require ah/transport//require;",
     1, 66, "ah", "a bundle"),
    ("spdadd 10.0.0.1 10.0.0.2 any -P in ipsec esp/transport//use esp/transport//use;",
     1, 61, "esp", "a bundle"),
    ("add 10.0.0.1 10.0.0.2 ah 0x1000 -A hmac-sha1 0x00;", 1, 23, "ah",
     "hand-keyed AH (RFC 4302) SAs are not supported"),
    ("add 10.0.0.1 10.0.0.2 ah-old 0x1000 -A hmac-sha1 0x00;", 1, 23, "ah-old",
     "hand-keyed AH (RFC 4302)"),
    ("add 10.0.0.1 10.0.0.2 ipcomp 0x1000 -C deflate;", 1, 23, "ipcomp",
     "hand-keyed IPComp (RFC 3173) SAs are not supported"),
    ("add 10.0.0.1 10.0.0.2 esp-old 0x1000 -E aes-cbc 0x00;", 1, 23, "esp-old", "only esp"),
    ("add 10.0.0.1 10.0.0.2 esp 999 -m tunnel -E aes-cbc 0x00;", 1, 34, "tunnel",
     "hand-keyed tunnel-mode SAs are not supported"),
    ("add 10.0.0.1 10.0.0.2 esp 999 -r 256 -E aes-cbc 0x00;", 1, 34, "256",
     "replay window out of range (at most 255)"),
    ("add 10.0.0.1 10.0.0.2 esp 0 -E aes-cbc 0x00;", 1, 27, "0", "SPI"),
    ("add 10.0.0.1 10.0.0.2 esp 0x1ffffffff -E aes-cbc 0x00;", 1, 27, "0x1ffffffff", "SPI"),
    ("add 10.0.0.1 10.0.0.2 esp zz -E aes-cbc 0x00;", 1, 27, "zz", "SPI"),
    ("add 10.0.0.1 10.0.0.2 esp 999 -E des-cbc 0x0011223344556677;", 1, 34, "des-cbc",
     "not supported"),
    ("add 10.0.0.1 10.0.0.2 esp 999 -E rot13 0x00;", 1, 34, "rot13", "unknown algorithm"),
    ("add 10.0.0.1 10.0.0.2 esp 999 -E aes-cbc 0x0011;", 1, 42, "<16-bit key>", "128/192/256"),
    ("add 10.0.0.1 10.0.0.2 esp 999 -E aes-cbc 0xzz;", 1, 42, "<key>", "0x"),
    ("add 10.0.0.1 10.0.0.2 esp 999 -m sideways -E aes-cbc 0x00;", 1, 34, "sideways", "mode"),
    ("add 10.0.0.1 10.0.0.2 esp 999 -r 64 -r 32;", 1, 37, "-r", "twice"),
    ("add 10.0.0.1 10.0.0.2 esp 999 -q 1;", 1, 31, "-q", "unknown SA option"),
    ("add 10.0.0.1 10.0.0.2 esp 999 -m transport;", 1, 43, ";", "-E"),
    ("add 10.0.0.1 10.0.0.2 esp 999 -E aes-cbc " + AES128 + ";", 1, 76, ";", "-A"),
]


@pytest.mark.parametrize("text,line,col,token,words", MALFORMED)
def test_malformed_file_reports_position_and_token(text, line, col, token, words):
    with pytest.raises(SetkeyError) as err:
        parse_setkey(text, "bad.conf")
    e = err.value
    assert (e.file, e.line, e.col, e.token) == ("bad.conf", line, col, token), str(e)
    assert words in e.msg, str(e)
    assert str(e).startswith(f"bad.conf:{line}:{col}: ")


def test_a_bad_key_is_never_echoed():
    secret = "0x" + "5e" * 15  # a 120-bit key: the wrong size
    with pytest.raises(SetkeyError) as err:
        parse_setkey(f"add 10.0.0.1 10.0.0.2 esp 999 -E aes-cbc {secret} -A hmac-sha1 {SHA1};",
                     "k.conf")
    assert "5e5e" not in str(err.value)


def test_an_error_late_in_the_file_yields_no_partial_result():
    good = "spdadd 10.0.0.1 10.0.0.2 any -P out none;\n" * 3
    with pytest.raises(SetkeyError) as err:
        parse_setkey(good + "spdadd 10.0.0.1 10.0.0.2 any -P out nonsense;\n", "t.conf")
    assert err.value.line == 4
