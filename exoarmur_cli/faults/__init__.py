"""Network faults injected at run time between the stack's components (see ``proxy``)."""

from exoarmur_cli.faults.proxy import FaultProxy, ProxyStats, Toxics

__all__ = ["FaultProxy", "ProxyStats", "Toxics"]
