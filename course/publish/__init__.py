"""Publishing: the Sphinx extension, the site build, the published folder, the editions and the terminal report."""
