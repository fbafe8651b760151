"""Test doubles and serving helpers for the sparkstack test suite and benchmarks.

Never a dependency of a product package: only the workspace's ``dev`` group installs it.
"""
