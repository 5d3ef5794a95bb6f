"""Keys never reach a log line through an event's repr()."""

from ikev1.events import EspKeys


def test_esp_keys_repr_hides_key_material() -> None:
    enc, auth = bytes.fromhex("b397f6029caadb4977ea76e4a6a81e87"), bytes(range(20))
    keys = EspKeys(spi=0x05A8E20A, src="198.18.0.1", dst="198.18.0.2", enc_alg="aes-cbc",
                   enc_key=enc, auth_alg="hmac-sha1", auth_key=auth)
    text = repr(keys)
    assert "spi=94953994" in text
    for secret in (enc, auth):
        assert secret.hex() not in text and repr(secret) not in text
