"""Sphinx configuration for the sanic-synchro-ctx documentation."""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

project = "sanic-synchro-ctx"
author = "The sanic-synchro-ctx maintainers"
copyright = "2026, " + author

extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.viewcode"]
myst_enable_extensions = ["colon_fence"]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
# The optional clients are not needed to document the interfaces that use them.
autodoc_mock_imports = ["redis", "asyncio_redis", "aiomcache", "lmdb"]
nitpicky = False
html_theme = "alabaster"
html_title = "sanic-synchro-ctx"
