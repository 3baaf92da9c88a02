"""Every study test closes the figures it opened, as the analysis tests do."""

from ..analysis.conftest import _close_figures  # noqa: F401 (an autouse fixture)
