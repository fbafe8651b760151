"""Code shared by the sparkstack services."""
