"""The api process: HTTP ingress. Authenticate, validate, admit or refuse, publish durably.

Every refusal is synchronous, carries a reason code, and is counted per (tenant, reason);
the counters are flushed to the EVENTS stream on an interval so overload cannot flood the
audit log. Where to look:

- ``admission``  the submit path, ``POST /v1/intents`` (served around the middleware)
- ``reads``      an intent's state by key; a tenant's audit listing
- ``operator``   kill switches and approvals
- ``health``     ``/healthz``, ``/readyz``, ``/metrics``
- ``http``       authentication, bounded bodies, refusals and the error table
- ``state``      what one api process holds
- ``app``        wiring: routes, lifespan, ``run_api``
"""

from exoarmur.api.app import create_app, run_api
from exoarmur.api.http import OPERATOR, Refusal
from exoarmur.api.reads import list_subject
from exoarmur.api.state import ApiState

__all__ = ["OPERATOR", "ApiState", "Refusal", "create_app", "list_subject", "run_api"]
