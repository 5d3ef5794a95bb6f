"""Known-answer tests for the IKEv1 key schedule (RFC 2409 §5, §5.5, App. B).

Vector sources (numbers copied as data; the tests are our own):
- NIST CAVS IKEv1 sample vectors as embedded in NSS's gtests
  (nss/gtests/common/testvectors/ike-sha1-vectors.h, ike-sha256-vectors.h and
  ike-sha384-vectors.h, "these vectors are from this NIST samples"): SKEYID for a pre-shared
  key, SKEYID_d/a/e from SKEYID and g^xy.
- NSS's own App. B vectors from the same files ("self-generated" there, an independent
  implementation): the phase-1 key expansion and the quick-mode KEYMAT style expansion.
- Two complete PSK main-mode exchanges (AES-128, SHA-1, MODP 1024) published in the IKE test
  code of RUB-NDS/IPsec-StateMachineExtractor (IKEv1HandshakeSessionSecretsTest.java): cookies,
  nonces, DH values, SA body and ID, with SKEYID and its children, the encryption key, the
  phase-1 IV, HASH_R, and a phase-2 IV for a message ID.
"""

from __future__ import annotations

import hashlib
import hmac

import pytest

from ikev1 import crypto

h = bytes.fromhex


# --- NIST CAVS samples (via NSS) -------------------------------------------------------------

# (hash, psk, Ni, Nr, SKEYID)
CAVS_PSK_SKEYID = [
    (
        "sha1",
        "c0",
        "03a6f25a83c8c2a3",
        "9d958a6618f77e7f",
        "ab3be41bc62f2ef0c41a3076d58768be77fadd2e",
    ),
    (
        "sha256",
        "a0",
        "ead9ced494868f41",
        "f1aff4f425a94f18",
        "558a99b299773d267cf7c8ef073bf3b7af362c206c75a538403c5ef884d4cace",
    ),
    (
        "sha384",
        "9e",
        "d6596b7e5b398534",
        "136fbdfa8d0ceb8e",
        "b54fa27cb4251051e44a659d73591845691d11f1874bf4e4088e5df6462d28e5"
        "7a3a2af3ab4f9b746a8f5766f8785f2b",
    ),
]

# (hash, SKEYID, g^xy, CKY-I, CKY-R, SKEYID_d, SKEYID_a, SKEYID_e)
CAVS_SKEYID_CHILDREN = [
    (
        "sha1",
        "707197817fb2d90cf54d1842606bdea59b9f4823",
        "8ba4cbc73c0187301dc19a975823854dbd641c597f637f8d053a83b9514673eb",
        "8c3bcd3a69831d7f",
        "d2d9a7ff4fbe95a7",
        "384be709a8a5e63c3ed160cfe3921c4b37d5b32d",
        "48b327575abe3adba0f279849e289022a13e2b47",
        "a4a415c8e0c38c0da847c356cc61c24df8025560",
    ),
    (
        "sha256",
        "750c5c94b9c2ec20b68033e024dadf0fa87e8b48c6561b21c72478451a06583d",
        "a1ff3dc6cf9b4c04709943cb4ca1f1789bcf360b03f1d027de3ae8ee039e9155",
        "6c6beb72631ddc3d",
        "b84e24b22cffbd14",
        "a4f7ca7de913814813e3312099e7c943bd293483f387532330237f1b20957310",
        "1d4b705746c43b0a6fcbb8db33983c0f24ff6f8b6543e3779fed227c6067f004",
        "03e6f16cd9ce9f64b5cdc5b34cca7163483ba5389a30afebef3d14640b0a815e",
    ),
    (
        "sha384",
        "6e4514610bf82d0ab7bf0260096f6146a153c712071abb633ced813c572156c7"
        "83e36874a65a64690ca701d40d56ea18",
        "1724dbd893523764bfef8c6fa927856fccfb77ae254358cce29c2769a32915c1",
        "1c8aba986a00af0f",
        "b049d9672f73c920",
        "b083234e9ed7745911f93eb31faa66fcf88906266830eb17ef166d295cb1f86a"
        "3543b8b8efa5df918533df537e9c809c",
        "938295a374aceb4147a8024c9a007dd313403fd8fd7070dbd0cfbe1ccd308dbf"
        "bb7b9e9c64049e4df44ff551016cb7b5",
        "8595b249dc1fa8599729f87eb6b9dd13bfbfdfd4f9ebd78929bab6ecc402539a"
        "d32cb6e7ef4ba6a0f53da14e4df07ed4",
    ),
]


@pytest.mark.parametrize("hash_name,psk,ni,nr,expected", CAVS_PSK_SKEYID)
def test_cavs_skeyid_psk(hash_name: str, psk: str, ni: str, nr: str, expected: str) -> None:
    assert crypto.skeyid_psk(hash_name, h(psk), h(ni), h(nr)) == h(expected)


@pytest.mark.parametrize("vector", CAVS_SKEYID_CHILDREN, ids=lambda v: v[0])
def test_cavs_skeyid_d_a_e(vector: tuple[str, ...]) -> None:
    hash_name, skeyid, gxy, cky_i, cky_r, d, a, e = vector
    got = crypto.skeyid_children(hash_name, h(skeyid), h(gxy), h(cky_i), h(cky_r))
    assert got == (h(d), h(a), h(e))


def test_cavs_skeyid_children_depend_on_every_input() -> None:
    hash_name, skeyid, gxy, cky_i, cky_r, d, _a, _e = CAVS_SKEYID_CHILDREN[0]
    good = crypto.skeyid_children(hash_name, h(skeyid), h(gxy), h(cky_i), h(cky_r))
    swapped = crypto.skeyid_children(hash_name, h(skeyid), h(gxy), h(cky_r), h(cky_i))
    assert swapped[0] != h(d) and swapped != good


# --- App. B key expansion and KEYMAT expansion (NSS vectors) ----------------------------------

SKEYID_E_SHA1 = "63e81194946ebd05df7df5ebf5d8750056bf1f1d"
APPB_SHA1_132 = (
    "933347a07de5782247dd36d1562ffe0eecade1eb4134165257e3af1000af8ae3f165063828cbb60d910b7db38fa3"
    "c7f62c4afaaf3203da065c841729853edb23e9e7ac8286ae65c8cb6c667d79268c0bd6705abb9131698eb822b1c1f9"
    "dd142fc7be2c1010ee0152e10195add98999c6b6d42c8fe9c1b134d56ad5f2c6f20e815bd25c52"
)
QUICK_SHA1_132 = (
    "933347a07de5782247dd36d1562ffe0eecade1ebaeaa476a5f578c34a9b2b7101a621202f61db924c5ef9efa3bb2"
    "698095841603b7ac8a880329a927ecd4ad53a944b607a5ac2f3d154e2748c188d7370d76be83fc204fdacf0f66b99d"
    "d760ba619ffac65eda1420c8a936dac5a599afaf4043b29ef2b65dc042724355b550875316c6fd"
)
SKEYID_E_SHA256 = "5f00d1bd2c58ec224b1e6b71fa0f19a1faa7a193952c444411b47c1a9d8ba6fe"
APPB_SHA256_132 = (
    "b10fff32cbeaa1e7afe6ab0b191e0bd63cd524849a4b56019146d232a24cf9af6b89494d2a360b06825db8bb0324"
    "c15cecf47fc0bc99e39bf1171a7f4bf1733dc49ef64c642e73b054b2e82456e34fa3c822da475e27e403b3da3929da"
    "50e6aa9e7f9252c68fa069b4b0edd374e80d35378c4f5e8ec285a1b169c92bbb5353d05ba94165"
)
QUICK_SHA256_132 = (
    "b10fff32cbeaa1e7afe6ab0b191e0bd63cd524849a4b56019146d232a24cf9af59f18ed9aabbb2dbbafecf48d72a"
    "34a8f72fab2ff4f37e5c917288a78ce00933612e9531a7469995c7f7cc33c7627cac3efbc819330c4fe3bfa3788799"
    "630f37bcb74800d82bbebd17b1906e304a786f4f810c266c15be1a30576039c293272748d65966"
)


@pytest.mark.parametrize(
    "hash_name,skeyid_e,expected",
    [("sha1", SKEYID_E_SHA1, APPB_SHA1_132), ("sha256", SKEYID_E_SHA256, APPB_SHA256_132)],
)
@pytest.mark.parametrize("length", [132, 40, 32, 15])
def test_app_b_expansion(hash_name: str, skeyid_e: str, expected: str, length: int) -> None:
    key = crypto.expand_key(hash_name, h(skeyid_e), length)
    if length <= len(h(skeyid_e)):
        # App. B: a key no longer than SKEYID_e is its leading bytes, no prf at all.
        assert key == h(skeyid_e)[:length]
    else:
        assert key == h(expected)[:length]


@pytest.mark.parametrize(
    "hash_name,key,expected",
    [("sha1", SKEYID_E_SHA1, QUICK_SHA1_132), ("sha256", SKEYID_E_SHA256, QUICK_SHA256_132)],
)
@pytest.mark.parametrize("length", [132, 40, 32, 15])
def test_keymat_expansion(hash_name: str, key: str, expected: str, length: int) -> None:
    # NSS's quick-mode vectors use a one-byte zero seed; K1 is computed even for short keys.
    assert crypto.keymat_expand(hash_name, h(key), b"\x00", length) == h(expected)[:length]


# --- Complete PSK main modes (RUB-NDS IPsec-StateMachineExtractor) ----------------------------

SA_OFFER_B = "00000001000000010000002c01010001000000240101000080010007800e0080800200028004000280030001800b0001800c7080"  # noqa: E501
ID_R_B = "010000000a00030a"  # ID_IPV4_ADDR 10.0.3.10

MAIN_MODE = [
    dict(
        cky_i="7116900aa5c2880d",
        cky_r="047ad6f8b3d0abb7",
        ni="4654fdd74594982a",
        nr="3673e64987b4956dbb8b933399251a5abf88f557a723b802b345f838667e9a4e",
        gxi="75fb75db0749d4b15d9bb067b63399f790246dd7919d0c0a88fc34dd76eb9ad204e162b261914c0966a2d32d"
        "05178d4c0f0ec3817692fca675678f2fd2a6869188b943e33ad44cc859a5af98d6d5332c538cff4174ee737c8624"
        "de910cc40bd953f7940d1b2d8a681cee03c85199fbe773bfa100ffea5fcb82eed25a399b0b3e",
        gxr="2096a31ff922e5224d9d19f06a41e2d9aebe1180d4e5cbc3d6ea166e2b8810d5ddd048375025ae9bf895ad40"
        "c508cd8b9398bded0d00ae7e77c1a1eb31930495106892630152a926a45037606cda4651340082fc10558786b4d8"
        "c4e6d72222d580d9a30d9c3b7fe9c348a6eadc5e79a24fe4b4364297b5ff71914ef8a6980e73",
        gxy="19B67B23EB5F792EC9D7E11D16501CA20F2A2D0B230D525CD824DFB16867B515DC2CE9560B20B2149BFB360C"
        "1662C26A5AD7FE1FAA86E66213238C80B2ED46CCB821BF5043093027EB6E32C71685A093306DF20C24190C7F9394"
        "7FA21E56D10E4C5B7063B2B4DC1747F1DF0BD46975D1825EEDE335E3ACBAD71A063CECF866C7",
        skeyid="49856BC53F30DB8CE55F5BEFAE9E42431279550C",
        skeyid_d="E5D7368180A8766F09C90CC9AC15182D3CD492EE",
        skeyid_a="92DE109FE83047C95812B600820F1476CD24AA49",
        skeyid_e="DE5D24679AD21491E63E2D7173017769CD7B9BC5",
        ka="DE5D24679AD21491E63E2D7173017769",
        iv="139568606DF1337CBCBC8FA7D201C8A8",
        hash_r="BA8C49CFD796BDC78E63FF6B5A858FC289DAD933",
        msgid=None,
        iv2=None,
    ),
    dict(
        cky_i="dc3f1d7452b2c376",
        cky_r="5f17969262b7829b",
        ni="18eeeee5b29ef938",
        nr="cf6306dcc088a94c1983462f97a3128ecdefbe4a1925cffddedd526215648099",
        gxi="a8b04c567a6bb3ab17da6a07f3f1667e6c70fb992ffe0a01dccc0877214c1936cc13a66aa97e4cd9ebfd61f6"
        "a7119859bba763255b54364d37a59f969d230f877cce6d77ca843e5f0cb24e354d51a429aabf75238f5a17ef5801"
        "f3b02d9f35dcd3562c35e6aeff67e9c71961f9313b6306c2c1adb428d6e70e713f894d9b7eda",
        gxr="7947cdf90ed5f07ca325c9c9e6de95a82e5728b2e1daf44866100723ad2bed0f09e8383cf89c7645c805c294"
        "2d4aebfa1b6c351a9666faa1f4988c3a557cb411a3b73fd3e094144e646ef5eb85118a61f06c6359e0f19b43a997"
        "20b49ae322155d462004be5e09140cfc843e0622c6735bc90ab730577fc311b23b25a8d283fa",
        gxy="9FC4267E99D40EE7AA19492615990548621EBED0AE925A0810C2F4BF30A100F6B13201BAC4595281E5F2FB6F"
        "AF56F9CDA292991B40B41A48CFBA7713140DE1784DBD525C0CB88A4D3B4B46D7CABD539CDD1E79EDE000420CFFE9"
        "ED8BCA0B2FE09208D9D3145F55F68CE0E3C6C479616B64F3EB451CD4CE268310BCDC766BA8A2",
        skeyid="505E91CA4127FE30D9CAD15F6176E8C504D2D612",
        skeyid_d="571D06B00EDA6D375310377F3B3E0994A936E0F2",
        skeyid_a="1DE7B88B63DEEA0BB41374C6F9514F64B894E083",
        skeyid_e="84FAF4DF7DCEC32AC45F13A485E732632160F596",
        ka="84FAF4DF7DCEC32AC45F13A485E73263",
        iv="0E09ED33BAC3584D1D10762A9BD026C1",
        hash_r="DDB2CF1067913E83EA6633B8B174BC8CE559B9D1",
        # Their phase-2 IV is taken from the phase-1 IV (no encrypted message yet in that test).
        msgid="d8029d42",
        iv2="0BF60ED4C34FEA8A12077A204DFD413F",
    ),
]
MAIN_MODE_PSK = b"AAAA"


@pytest.mark.parametrize("v", MAIN_MODE, ids=["exchange1", "exchange2"])
def test_recorded_main_mode(v: dict) -> None:
    keys = crypto.phase1_keys_psk(
        "sha1", MAIN_MODE_PSK, h(v["ni"]), h(v["nr"]), h(v["gxy"]), h(v["cky_i"]), h(v["cky_r"]),
        "aes", 128,
    )
    assert keys.skeyid == h(v["skeyid"])
    assert (keys.skeyid_d, keys.skeyid_a, keys.skeyid_e) == (
        h(v["skeyid_d"]), h(v["skeyid_a"]), h(v["skeyid_e"]),
    )
    assert keys.enc_key == h(v["ka"])
    iv = crypto.phase1_iv("sha1", h(v["gxi"]), h(v["gxr"]), crypto.block_size("aes"))
    assert iv == h(v["iv"])
    hash_r = crypto.hash_r(
        "sha1", keys.skeyid, h(v["gxi"]), h(v["gxr"]), h(v["cky_i"]), h(v["cky_r"]),
        h(SA_OFFER_B), h(ID_R_B),
    )
    assert hash_r == h(v["hash_r"])
    if v["msgid"]:
        assert crypto.phase2_iv("sha1", iv, h(v["msgid"]), 16) == h(v["iv2"])
        assert crypto.phase2_iv("sha1", iv, int(v["msgid"], 16), 16) == h(v["iv2"])


def test_recorded_main_mode_wrong_psk_changes_hash_r() -> None:
    v = MAIN_MODE[0]
    keys = crypto.phase1_keys_psk(
        "sha1", b"AAAB", h(v["ni"]), h(v["nr"]), h(v["gxy"]), h(v["cky_i"]), h(v["cky_r"]), "aes"
    )
    hash_r = crypto.hash_r(
        "sha1", keys.skeyid, h(v["gxi"]), h(v["gxr"]), h(v["cky_i"]), h(v["cky_r"]),
        h(SA_OFFER_B), h(ID_R_B),
    )
    assert hash_r != h(v["hash_r"])


# --- Formula layout checked with the standard library's HMAC as a second implementation ------


def _hmac(name: str, key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, getattr(hashlib, name)).digest()


@pytest.mark.parametrize("hash_name", crypto.HASH_NAMES)
def test_prf_matches_stdlib_hmac(hash_name: str) -> None:
    assert crypto.prf(hash_name, b"k" * 7, b"data") == _hmac(hash_name, b"k" * 7, b"data")
    assert crypto.hash_size(hash_name) == getattr(hashlib, hash_name)().digest_size
    assert crypto.digest(hash_name, b"x") == getattr(hashlib, hash_name)(b"x").digest()


def test_unknown_hash_is_an_error() -> None:
    with pytest.raises(ValueError):
        crypto.prf("sha3", b"k", b"d")


def test_hash_i_layout() -> None:
    gxi, gxr, ci, cr, sa, idi = b"I" * 128, b"R" * 128, b"c" * 8, b"d" * 8, b"sa", b"\x01id"
    expected = _hmac("sha256", b"skeyid", gxi + gxr + ci + cr + sa + idi)
    assert crypto.hash_i("sha256", b"skeyid", gxi, gxr, ci, cr, sa, idi) == expected
    # HASH_R swaps the DH values and cookies but keeps SAi_b (RFC 2409 §5).
    assert crypto.hash_r("sha256", b"skeyid", gxi, gxr, ci, cr, sa, idi) == _hmac(
        "sha256", b"skeyid", gxr + gxi + cr + ci + sa + idi
    )


def test_quick_mode_hashes_layout() -> None:
    a, mid, ni, nr, body = b"A" * 20, 0x01020304, b"n" * 16, b"m" * 16, b"payloads"
    mid_b = bytes.fromhex("01020304")
    assert crypto.qm_hash1("sha1", a, mid, body) == _hmac("sha1", a, mid_b + body)
    assert crypto.info_hash("sha1", a, mid_b, body) == _hmac("sha1", a, mid_b + body)
    assert crypto.qm_hash2("sha1", a, mid, ni, body) == _hmac("sha1", a, mid_b + ni + body)
    assert crypto.qm_hash3("sha1", a, mid, ni, nr) == _hmac("sha1", a, b"\0" + mid_b + ni + nr)


def test_message_id_must_be_four_bytes() -> None:
    with pytest.raises(ValueError):
        crypto.qm_hash1("sha1", b"a", b"\x01\x02\x03", b"")


@pytest.mark.parametrize("pfs", [None, b"G" * 128])
def test_keymat_layout_and_esp_split(pfs: bytes | None) -> None:
    d, spi, ni, nr = b"D" * 20, 0xC0FFEE01, b"n" * 16, b"m" * 24
    seed = (pfs or b"") + bytes([3]) + spi.to_bytes(4, "big") + ni + nr
    k1 = _hmac("sha1", d, seed)
    k2 = _hmac("sha1", d, k1 + seed)
    k3 = _hmac("sha1", d, k2 + seed)
    assert crypto.keymat("sha1", d, 3, spi, ni, nr, 60, pfs) == (k1 + k2 + k3)
    enc, auth = crypto.esp_keys("sha1", d, spi, ni, nr, "aes-cbc", 16, "hmac-sha1", pfs)
    assert (enc, auth) == ((k1 + k2)[:16], (k1 + k2 + k3)[16:36])
    # The SPI as 4 raw bytes gives the same keys.
    assert crypto.esp_keys("sha1", d, spi.to_bytes(4, "big"), ni, nr, "aes-cbc", 16,
                           "hmac-sha1", pfs) == (enc, auth)


@pytest.mark.parametrize(
    "enc,enc_len,auth,expected",
    [
        ("aes-cbc", None, "hmac-sha1", (16, 20)),
        ("aes-cbc", 32, "hmac-sha256", (32, 32)),
        ("aes-cbc", 24, "hmac-md5", (24, 16)),
        ("3des-cbc", None, "hmac-sha1", (24, 20)),
    ],
)
def test_esp_key_lengths(enc: str, enc_len: int | None, auth: str, expected: tuple) -> None:
    assert crypto.esp_key_lengths(enc, enc_len, auth) == expected
    keys = crypto.esp_keys("md5", b"d", 1, b"n", b"m", enc, enc_len, auth)
    assert tuple(map(len, keys)) == expected


@pytest.mark.parametrize(
    "enc,enc_len,auth", [("aes-cbc", 20, "hmac-sha1"), ("des-cbc", None, "hmac-sha1"),
                         ("aes-cbc", 16, "hmac-whirlpool")]
)
def test_esp_key_lengths_refuse_unknown(enc: str, enc_len: int | None, auth: str) -> None:
    with pytest.raises(ValueError):
        crypto.esp_key_lengths(enc, enc_len, auth)


@pytest.mark.parametrize(
    "enc,bits,hash_name,length",
    [("aes", 128, "sha1", 16), ("aes", 256, "sha1", 32), ("3des", None, "md5", 24),
     ("aes", 192, "sha512", 24)],
)
def test_phase1_key_lengths(enc: str, bits: int | None, hash_name: str, length: int) -> None:
    cookies = (b"c" * 8, b"d" * 8)
    keys = crypto.phase1_keys_psk(hash_name, b"psk", b"n", b"m", b"g", *cookies, enc, bits)
    assert len(keys.enc_key) == length
    assert keys.enc_key == crypto.expand_key(hash_name, keys.skeyid_e, length)
    assert "psk" not in repr(keys) and keys.skeyid.hex() not in repr(keys)
