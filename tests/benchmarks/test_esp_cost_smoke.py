"""The ESP benchmark runs end to end in smoke mode and returns its figures in the agreed shape."""

from __future__ import annotations

from benchmarks import esp_cost


def test_esp_cost_smoke(tmp_path, capsys):
    result = esp_cost.run(rounds=1, smoke=True, out_dir=tmp_path)
    assert result["name"] == "esp"
    assert set(result["sizes"]) == {"64", "512", "1400"}
    for entry in result["sizes"].values():
        for column in ("seal_us", "open_us", "openssl_seal_us", "openssl_open_us", "naive_seal_us"):
            stats = entry[column]
            assert len(stats["samples"]) == 1
            assert 0 < stats["median"] < 10_000
        assert entry["seal_vs_openssl"] > 0 and entry["open_vs_openssl"] > 0
    # Bigger packets cost the OpenSSL ceiling more: the per-byte scaling is applied.
    sizes = result["sizes"]
    assert sizes["1400"]["openssl_seal_us"]["median"] > sizes["64"]["openssl_seal_us"]["median"]
    printed = capsys.readouterr().out
    assert "1400 B" in printed and "seal/OpenSSL" in printed
    assert result["table"] in printed
