"""The sparkstack CLI and the launcher for embedded infrastructure."""
