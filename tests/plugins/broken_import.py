"""A deliberately broken plugin: its import fails."""

import galaug_this_module_does_not_exist  # noqa: F401
