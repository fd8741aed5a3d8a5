"""Any app, as it is, plus the readiness route of tests/apps/readiness.py.

``SYNCHRO_WRAPPED_APP=module:name`` names the app (an example of the docs or of the 0.1.0
README, left word for word); this module's ``app`` is that app with ``GET /main-ready``
added, so that the test can stop it with SIGINT once Sanic's main process can take one.
"""

import importlib
import os

from tests.apps.readiness import add_main_ready

_module, _, _name = os.environ["SYNCHRO_WRAPPED_APP"].partition(":")
app = getattr(importlib.import_module(_module), _name)
add_main_ready(app)
