"""The reality-run harness: stack control, faults, scenario drivers, checkers, evidence bundle.

It talks to the stack only through its public surfaces (HTTP, NATS subjects, KV buckets,
process control); from ``exoarmur`` it imports only the wire contracts and the pure decision.
"""
