"""ESP (RFC 4303) in transport mode: security associations, the SAD and its dumps.

Submodules: esp.sa (EspSA, Lifetime, EspDrop), esp.replay, esp.sad (SAD), esp.dump,
esp.algorithms (the cipher and integrity tables),
esp.udp (ESP in UDP, RFC 3948).
"""
