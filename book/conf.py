"""Sphinx configuration of the HTML book: ``make html`` (reading mode) or, with ``CAPSEDU_TEST_MODE=1``,
the fast test-mode build. MyST-NB executes every chapter (outputs cached per mode, see
``bookbuild.cache_path``); MathJax comes from ``node_modules`` (``npm ci``), never from a CDN."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import bookbuild  # noqa: E402

project = "capsedu — Capsule Networks, runnable"
author = "the capsedu authors"
copyright = "capsedu authors, MIT licence"
language = "en"

extensions = ["myst_nb"]
exclude_patterns = ["_build", "**.ipynb_checkpoints", "slides"]
root_doc = "index"

# ---- notebooks: execute each chapter (in this folder, as a reader would), cache per mode, fail on errors
nb_execution_mode = "cache"
nb_execution_cache_path = str(bookbuild.cache_path())
# a test-mode cell takes seconds: a stuck kernel fails the build within minutes, naming the cell
nb_execution_timeout = 300 if bookbuild.test_mode() else 1800
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = True
# Widgets need a kernel. Their output carries a static rendering (text/html: figures of a few settings
# and how to run them live), which the page shows instead of the interactive view; and no widget
# JavaScript is loaded from a CDN.
nb_mime_priority_overrides = [("html", "application/vnd.jupyter.widget-view+json", None)]
nb_ipywidgets_js = {}

myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

# ---- equations: MathJax 3 served from this site's _static folder (copied from node_modules)
mathjax_path = bookbuild.MATHJAX_SCRIPT
mathjax3_config = bookbuild.mathjax3_config()

# ---- theme
html_theme = "sphinx_book_theme"
html_title = "Capsule Networks, runnable"
html_static_path = ["_static"]
html_css_files = ["book.css"]
html_theme_options = {
    "show_toc_level": 2,
    "use_download_button": False,
    "use_fullscreen_button": False,
    "home_page_in_toc": True,
}
html_last_updated_fmt = None
html_context = {"default_mode": "light"}
html_show_sourcelink = False


def _copy_offline_assets(app):
    """MathJax into the site's _static folder, before any chapter executes (a missing npm install fails at once)."""
    if app.builder.format == "html":
        bookbuild.copy_assets(Path(app.outdir) / "_static", packages=["mathjax"])


def setup(app):
    app.connect("builder-inited", _copy_offline_assets)
