"""Ingestion, one vertical slice shared by the orchestrator (producer) and the ingest-worker.

- :mod:`.contract`: queue settings (one class, both processes), subjects, the message schema.
- :mod:`.nats`: the NATS link that never gives up; stream and consumer setup.
- :mod:`.schema`: the tables, as migrations of :mod:`sparkstack_common.migrations`.
- :mod:`.spool`: an upload on its way in (hashed, counted, compressed, spooled to disk).
- :mod:`.store`: jobs and their state machine, uploads, tracked documents, the outbox table.
- :mod:`.outbox`: the relay that publishes committed jobs' messages.

Import the submodules directly; this package imports nothing, so the migrations can import
:mod:`.schema` without a cycle.
"""
