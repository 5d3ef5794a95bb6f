"""The forwarding core: what the forwarding process decides per packet, without I/O.

Submodules: forward.core (ForwardingCore, Tunnel, Counters, DROP_REASONS), forward.state
(SadState: the SPD, the SAD and each SA's selectors), forward.events (Acquire, Expire),
forward.specs (TunnelSpec, SaSpec: what the IKE process sends).
"""
