"""ESP (RFC 4303) in transport mode: security associations, the SAD and its dumps.

Submodules: esp.sa (EspSA, Lifetime, EspDrop), esp.replay, esp.sad (SAD), esp.dump,
esp.algorithms (the cipher and integrity tables, and the room they take: max_payload),
esp.udp (ESP in UDP, RFC 3948).
"""
