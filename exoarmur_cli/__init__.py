"""The reality-run harness: stack control, faults, scenario drivers, checkers, evidence bundle.

It talks to the stack only through its public surfaces (HTTP, NATS subjects, KV buckets,
process control). From ``exoarmur`` it imports the wire contracts and the pure decision (for
replay), plus what describes those surfaces: the stack's config-file schema (``stackconfig``),
subject and stream names with the connect helper (``natsio``), and the names of injectable
defects — never a component's internals.
"""
